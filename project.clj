;; The topology jar that `sparse submit` builds (Debian's leiningen, no Clojars needed).
;; Storm's own classes are on every worker's classpath already (storm.home/lib-worker),
;; so the jar carries only the Python code under src/ (as resources). streamparse submits
;; the topology over Nimbus' Thrift API; Flux (for `autotag run`) lives in storm.home/extlib.
(defproject autotag "0.1.0-SNAPSHOT"
  :resource-paths ["_resources"]
  :target-path "_build"
  :min-lein-version "2.0.0"
  :jvm-opts ["-client"]
  :repositories ^:replace [["central" {:url "https://repo1.maven.org/maven2/" :snapshots false}]
                           ["debian" {:url "file:///usr/share/maven-repo" :checksum :ignore}]]
  :profiles {:base {}}
  :dependencies [[org.apache.storm/storm-client "2.8.3" :scope "provided"]]
  :jar-exclusions     [#"log4j\.properties" #"org/apache/storm/(?!flux)" #"trident" #"META-INF/.*\.(SF|DSA|RSA)" #"\.yaml$"]
  :uberjar-exclusions [#"log4j\.properties" #"org/apache/storm/(?!flux)" #"trident" #"META-INF/.*\.(SF|DSA|RSA)" #"\.yaml$"])
