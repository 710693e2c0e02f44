//! A chaos test: a real TCP echo server on 127.0.0.1, on real tokio and the wall clock. It could
//! not run in a `*_dst.rs` file (the lint would reject `tokio::spawn` and the real socket's
//! runtime there); here it is one trial, `chaos::echo_chaos::echo_over_a_real_socket`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[kelpie::chaos_test(timeout = "10s")]
async fn echo_over_a_real_socket() -> Result<(), std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    assert_ne!(addr.port(), 0, "a real socket gets a real port");
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = [0u8; 5];
        socket.read_exact(&mut buf).await?;
        socket.write_all(&buf).await?;
        Ok::<_, std::io::Error>(())
    });
    let mut client = TcpStream::connect(addr).await?;
    client.write_all(b"hello").await?;
    let mut echoed = [0u8; 5];
    client.read_exact(&mut echoed).await?;
    assert_eq!(&echoed, b"hello");
    server.await.expect("the server task ran")?;
    Ok(())
}
