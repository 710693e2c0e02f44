//! Three-node TCP round trips, the same tokio code under Kelpie (`Simulation`, kelpie-tokio's
//! sockets, every socket event traced) and under raw madsim with madsim-tokio's sockets (madsim's
//! own), side by side: two server nodes answer 8-byte requests, a client node sends 100 requests
//! alternating between them, one seed per fresh thread either way. A third mode, `passthrough`,
//! runs kelpie-tokio's sockets on raw madsim (no Kelpie run: they only pass through).
//!
//! ```text
//! cargo run --release -p tokio-kv --example tcp_roundtrips -- all 200
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/tcp_roundtrips raw 100      # then `kelpie 100`, `passthrough 100`
//! ```

//! It needs the simulation build (`--cfg madsim`, which the workspace's `.cargo/config.toml`
//! sets); built without it (tokio-kv's plain-tokio check), it says so and exits.

use std::process::ExitCode;

#[cfg(madsim)]
fn main() -> ExitCode {
    bench::main()
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    eprintln!("tcp_roundtrips runs only in a simulation build (--cfg madsim)");
    ExitCode::from(2)
}

/// The workload and the two ways to run it.
#[cfg(madsim)]
mod bench {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use kelpie::{SimConfig, Simulation};

    const ROUND_TRIPS: u64 = 100;
    const PORT: u16 = 7000;

    /// The workload, written once against a `net` module: `$net` is madsim's sockets
    /// (madsim-tokio's `tokio::net`) or kelpie-tokio's (this crate's `tokio::net`).
    macro_rules! workload {
        ($name:ident, $net:path) => {
            mod $name {
                use std::net::{IpAddr, SocketAddr};

                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                use $net as net;

                use super::{PORT, ROUND_TRIPS};

                /// A server: answers each 8-byte number with the number plus one, a task per
                /// connection.
                pub(super) async fn serve(ip: IpAddr) {
                    let listener = net::TcpListener::bind((ip, PORT)).await.expect("bind");
                    while let Ok((mut stream, _)) = listener.accept().await {
                        tokio::spawn(async move {
                            let mut buf = [0u8; 8];
                            while stream.read_exact(&mut buf).await.is_ok() {
                                let reply = (u64::from_le_bytes(buf) + 1).to_le_bytes();
                                if stream.write_all(&reply).await.is_err()
                                    || stream.flush().await.is_err()
                                {
                                    return;
                                }
                            }
                        });
                    }
                }

                /// The client: `ROUND_TRIPS` requests, alternating between the two servers;
                /// the sum of the replies (checked by the caller).
                pub(super) async fn client(servers: [SocketAddr; 2]) -> u64 {
                    let mut conns = [
                        net::TcpStream::connect(servers[0]).await.expect("connect"),
                        net::TcpStream::connect(servers[1]).await.expect("connect"),
                    ];
                    let mut sum = 0;
                    for i in 0..ROUND_TRIPS {
                        let conn = &mut conns[(i % 2) as usize];
                        conn.write_all(&i.to_le_bytes()).await.expect("write");
                        conn.flush().await.expect("flush");
                        let mut buf = [0u8; 8];
                        conn.read_exact(&mut buf).await.expect("read");
                        sum += u64::from_le_bytes(buf);
                    }
                    sum
                }
            }
        };
    }

    workload!(madsim_sockets, madsim::net);
    workload!(kelpie_sockets, tokio::net);

    /// A way to run one seed, by name.
    type Mode = (&'static str, fn(u64) -> u64);

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    /// One seed on raw madsim, on a fresh thread, with madsim-tokio's sockets.
    fn raw(seed: u64) -> u64 {
        on_raw_madsim(seed, madsim_sockets::serve, madsim_sockets::client)
    }

    /// One seed on raw madsim, on a fresh thread, with kelpie-tokio's sockets (passing through).
    fn passthrough(seed: u64) -> u64 {
        on_raw_madsim(seed, kelpie_sockets::serve, kelpie_sockets::client)
    }

    /// One seed of `serve`s and `client` on raw madsim, on a fresh thread.
    fn on_raw_madsim<S, C>(
        seed: u64,
        serve: fn(IpAddr) -> S,
        client: fn([SocketAddr; 2]) -> C,
    ) -> u64
    where
        S: std::future::Future<Output = ()> + 'static,
        C: std::future::Future<Output = u64> + Send + 'static,
    {
        std::thread::spawn(move || {
            let rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.block_on(async move {
                let h = madsim::runtime::Handle::current();
                let _s1 = h.create_node().ip(ip(2)).init(move || serve(ip(2))).build();
                let _s2 = h.create_node().ip(ip(3)).init(move || serve(ip(3))).build();
                let c = h.create_node().ip(ip(4)).build();
                madsim::time::sleep(Duration::from_millis(1)).await;
                let servers = [SocketAddr::new(ip(2), PORT), SocketAddr::new(ip(3), PORT)];
                c.spawn(client(servers)).await.expect("client")
            })
        })
        .join()
        .expect("seed thread")
    }

    /// One seed under Kelpie (its own seed thread).
    fn kelpie(seed: u64) -> u64 {
        Simulation::new(SimConfig::with_seed(seed))
            .run(|env| async move {
                let serve = |env: kelpie::SimEnv| kelpie_sockets::serve(env.ip());
                let s1 = env.create_node("s1").init(serve).build();
                let s2 = env.create_node("s2").init(serve).build();
                let c = env.create_node("c").build();
                env.sleep(Duration::from_millis(1)).await;
                let servers = [
                    SocketAddr::new(s1.ip(), PORT),
                    SocketAddr::new(s2.ip(), PORT),
                ];
                c.spawn(kelpie_sockets::client(servers))
                    .await
                    .expect("client")
            })
            .expect("the run")
            .output
    }

    pub(super) fn main() -> ExitCode {
        let mut args = std::env::args().skip(1);
        let mode = args.next().unwrap_or_else(|| "all".into());
        let seeds: u64 = match args.next().map(|s| s.parse()) {
            None => 200,
            Some(Ok(n)) if n > 0 => n,
            _ => {
                eprintln!("error: expected `[raw|kelpie|passthrough|all] [SEEDS > 0]`");
                return ExitCode::from(2);
            }
        };
        let expected: u64 = (1..=ROUND_TRIPS).sum();
        let modes: Vec<Mode> = match mode.as_str() {
            "raw" => vec![("raw madsim + madsim-tokio", raw)],
            "kelpie" => vec![("kelpie Simulation", kelpie)],
            "passthrough" => vec![("raw madsim + kelpie-tokio", passthrough)],
            "all" => vec![
                ("raw madsim + madsim-tokio", raw),
                ("kelpie Simulation", kelpie),
                ("raw madsim + kelpie-tokio", passthrough),
            ],
            _ => {
                eprintln!("error: unknown mode `{mode}`; expected raw, kelpie, passthrough or all");
                return ExitCode::from(2);
            }
        };
        for (name, run) in modes {
            let start = Instant::now();
            for seed in 0..seeds {
                assert_eq!(run(seed), expected, "{name}, seed {seed}: wrong replies");
            }
            let wall = start.elapsed();
            println!(
                "{name:<28} {seeds} seeds x {ROUND_TRIPS} round trips: {:.1} µs/seed",
                wall.as_secs_f64() * 1e6 / seeds as f64
            );
        }
        ExitCode::SUCCESS
    }
}
