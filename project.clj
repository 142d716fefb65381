;; The topology jar that `sparse submit` builds (Debian's leiningen, no Clojars needed).
;; Storm's own classes are on every worker's classpath already (storm.home/lib-worker),
;; so the uberjar carries only Flux and the Python code under src/ (as resources).
(defproject autotag "0.1.0-SNAPSHOT"
  :resource-paths ["_resources"]
  :target-path "_build"
  :min-lein-version "2.0.0"
  :jvm-opts ["-client"]
  :repositories ^:replace [["central" {:url "https://repo1.maven.org/maven2/" :snapshots false}]
                           ["debian" {:url "file:///usr/share/maven-repo" :checksum :ignore}]]
  :profiles {:base {}}
  :dependencies  [[org.apache.storm/storm-core "2.8.4"]
                  [org.apache.storm/flux-core "2.8.4"]]
  :jar-exclusions     [#"log4j\.properties" #"org/apache/storm/(?!flux)" #"trident" #"META-INF" #"meta-inf" #"\.yaml"]
  :uberjar-exclusions [#"log4j\.properties" #"org/apache/storm/(?!flux)" #"trident" #"META-INF" #"meta-inf" #"\.yaml"]
  )
