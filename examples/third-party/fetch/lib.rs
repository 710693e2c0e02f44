//! Never built: this manifest exists to make `cargo fetch` download mini-redis.
