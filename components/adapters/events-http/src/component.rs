//! The wasm glue: `events.order-placed` as one `POST` to the fulfilment app.

order_domain::bindings!("nano:orders/events-publisher");
order_domain::export_events!(EventsHttp, post);

use networked_publisher::{message, required};
use order_domain::{Error, Order};
use spin_sdk::http::{Method, Request, Response};

fn post(order: Order) -> Result<(), Error> {
    let payload = message(&order)?;
    let url = required("fulfilment_url")?;
    let request = Request::builder()
        .method(Method::Post)
        .uri(&url)
        .header("content-type", "application/json")
        .body(payload)
        .build();
    let response: Response = spin_sdk::http::run(spin_sdk::http::send(request))
        .map_err(|e| Error::Unavailable(format!("fulfilment at {url}: {e}")))?;
    match *response.status() {
        200..=299 => Ok(()),
        status => Err(Error::Unavailable(format!(
            "fulfilment at {url} answered {status}: {}",
            String::from_utf8_lossy(response.body())
        ))),
    }
}
