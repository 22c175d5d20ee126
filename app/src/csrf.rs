//! The server-function client: every call carries the page's CSRF token in `X-CSRF-Token`, which the
//! server compares with the session's (or, before sign-in, with the `__Host-` CSRF cookie's).

use futures::{Sink, Stream};
use leptos::server_fn::Bytes;
use leptos::server_fn::client::Client;
use leptos::server_fn::client::browser::BrowserClient;
use leptos::server_fn::error::FromServerFnError;
use leptos::server_fn::request::browser::BrowserRequest;
use leptos::server_fn::response::browser::BrowserResponse;
use std::future::Future;

pub const HEADER: &str = "X-CSRF-Token";

pub struct CsrfClient;

impl<E, IS, OS> Client<E, IS, OS> for CsrfClient
where
    E: FromServerFnError,
    IS: FromServerFnError,
    OS: FromServerFnError,
{
    type Request = BrowserRequest;
    type Response = BrowserResponse;

    fn send(req: Self::Request) -> impl Future<Output = Result<Self::Response, E>> + Send {
        if let Some(token) = token() {
            req.headers().set(HEADER, &token);
        }
        <BrowserClient as Client<E, IS, OS>>::send(req)
    }

    #[allow(clippy::type_complexity)]
    fn open_websocket(
        path: &str,
    ) -> impl Future<
        Output = Result<
            (impl Stream<Item = Result<Bytes, Bytes>> + Send + 'static, impl Sink<Bytes> + Send + 'static),
            E,
        >,
    > + Send {
        <BrowserClient as Client<E, IS, OS>>::open_websocket(path)
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        <BrowserClient as Client<E, IS, OS>>::spawn(future)
    }
}

/// The token the server rendered into `<meta name="csrf-token">`.
pub fn token() -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        leptos::prelude::document()
            .query_selector("meta[name=\"csrf-token\"]")
            .ok()
            .flatten()
            .and_then(|el| el.get_attribute("content"))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        None
    }
}

/// Replace the page's token after the server rotated it (password change).
pub fn set_token(_value: &str) {
    #[cfg(feature = "hydrate")]
    if let Ok(Some(el)) = leptos::prelude::document().query_selector("meta[name=\"csrf-token\"]") {
        let _ = el.set_attribute("content", _value);
    }
}
