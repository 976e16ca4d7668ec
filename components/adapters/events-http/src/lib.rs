//! "Order placed" POSTed to the fulfilment app (`{{ fulfilment_url }}`, e.g.
//! `http://fulfilment:3000/fulfil`) with Spin's outbound HTTP: the contract-first way of
//! linking two Spin apps. The body is the same signed message as on MQTT and Redis.
//! The call returns once fulfilment answered, so a 2xx means the order is fulfilled.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-publisher",
    with: {
        "nano:orders/types@0.1.0": order_domain::types,
    },
});

use exports::nano::orders::events::Guest;
use networked_publisher::{message, required};
use order_domain::{Error, Order};
use spin_sdk::http::{Method, Request, Response};

struct EventsHttp;

impl Guest for EventsHttp {
    fn order_placed(order: Order) -> Result<(), Error> {
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
}

export!(EventsHttp);
