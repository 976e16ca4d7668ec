//! "Order placed" POSTed to the fulfilment app (`{{ fulfilment_url }}`, e.g.
//! `http://fulfilment:3000/fulfil`) with Spin's outbound HTTP: the contract-first way of
//! linking two Spin apps. The body is the same versioned JSON message as on MQTT and Redis.
//! The call returns once fulfilment answered, so a 2xx means the order is fulfilled.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-publisher",
});

use exports::nano::orders::events::Guest;
use nano::orders::types::{Error, Order};
use order_messages::PlacedOrder;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::variables;

struct EventsHttp;

impl Guest for EventsHttp {
    fn order_placed(order: Order) -> Result<(), Error> {
        let url = variables::get("fulfilment_url")
            .map_err(|e| Error::Unavailable(format!("Spin variable fulfilment_url: {e}")))?;
        let payload = order_messages::encode(&PlacedOrder {
            id: order.id,
            details: order.details,
            placed_at: order.placed_at,
        });
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
