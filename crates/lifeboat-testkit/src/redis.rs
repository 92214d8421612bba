//! A real `redis-server` for tests: lifeboat's own scratch server (free port, no
//! persistence, killed on drop), empty.

pub use lifeboat_redis::{Conn, RedisUrl, Scratch, Value};

pub struct RedisServer(Scratch);

impl RedisServer {
    pub fn start() -> Self {
        Self(Scratch::empty().expect("redis-server is installed (scripts/install-deps.sh)"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.0.port)
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(&self.0.url()).unwrap()
    }
}
