//! A TCP proxy that can stop answering: while paused it forwards nothing
//! either way yet keeps every connection open, as a database whose host
//! still accepts TCP but whose server hangs (or a path that swallows
//! packets after the handshake) looks to a client.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The proxy: its address, and the switch that pauses it.
pub struct StallingProxy {
    /// Where clients connect instead of the upstream.
    pub addr: SocketAddr,
    paused: watch::Sender<bool>,
    accepting: JoinHandle<()>,
}

impl StallingProxy {
    /// A proxy to `upstream`, forwarding until paused.
    pub async fn start(upstream: SocketAddr) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (paused, watching) = watch::channel(false);
        let accepting = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (down_read, down_write) = down.into_split();
                    let (up_read, up_write) = up.into_split();
                    tokio::join!(
                        pump(down_read, up_write, watching.clone()),
                        pump(up_read, down_write, watching)
                    );
                });
            }
        });
        StallingProxy {
            addr,
            paused,
            accepting,
        }
    }

    /// From now on nothing is forwarded (bytes read meanwhile are held).
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Forwards again, the held bytes first.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Copies `from` to `to` while not paused; ends with either side.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut paused: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
