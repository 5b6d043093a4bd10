//! The API as a [`tower::Service`] for the server's own components (the
//! in-process scheduler and controller manager): each request goes straight
//! to [`App::handle`], with the same authentication, in-flight limits,
//! deadlines, admission, storage and metrics as a request off the network,
//! but without loopback sockets, TLS records or HTTP/2 frames in between.
//! `kube::Client::new` takes it, so those components still speak only the
//! API through kube-rs; a standalone `skiff scheduler` reaches the same
//! handler over HTTPS.
//!
//! A request is served on the caller's runtime, as a call into a library
//! would be: the scheduler's own requests take turns with its scheduling
//! cycles on its two workers, not with the network's requests on the
//! server's, and no request crosses threads to be served. (Tasks the
//! server keeps for itself, such as the watch cache's reflector, run on the
//! server's runtime whoever asks first.) Dropping the response future
//! cancels the request, as a reset stream does.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};

use crate::app::App;
use crate::authn::PeerIdentity;
use crate::response::Body;

/// Hands requests to the app as the identity it was made for; cloning is cheap.
#[derive(Clone)]
pub struct InProcess {
    app: Arc<App>,
    peer: Arc<PeerIdentity>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

impl InProcess {
    /// Requests to `app` as `peer`.
    pub(crate) fn new(app: Arc<App>, peer: PeerIdentity) -> Self {
        InProcess {
            app,
            peer: Arc::new(peer),
        }
    }
}

impl<B> tower::Service<Request<B>> for InProcess
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let app = self.app.clone();
        let peer = self.peer.clone();
        Box::pin(async move { Ok(app.handle(&peer, req).await) })
    }
}
