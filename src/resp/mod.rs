//! PLACEHOLDER: the RESP ingress is being written; replace this file.

use crate::server::State;
use tokio::net::TcpListener;

pub async fn serve(_listener: TcpListener, _state: State) {}
