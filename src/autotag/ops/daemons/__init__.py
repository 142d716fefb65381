"""Local services autotag runs itself: ZooKeeper, Storm daemons, Redis and PostgreSQL."""
