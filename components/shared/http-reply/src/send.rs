use crate::Reply;
use spin_sdk::http::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// Sends `reply`: body written and finished first, response handed to the host last (see the
/// crate documentation for why the order matters).
///
/// The host buffers what is written before it has the response (wasmtime-wasi-http: up to two
/// chunks of 1 MiB), far more than any reply here.
pub fn send(out: ResponseOutparam, reply: Reply) {
    let headers: Vec<(String, Vec<u8>)> = reply
        .all_headers()
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let fields = Fields::from_list(&headers).expect("header names and values are valid");
    let response = OutgoingResponse::new(fields);
    response
        .set_status_code(reply.status)
        .expect("the adapters only use valid status codes");
    let body = response.body().expect("the body is taken once");
    if let Err(e) = write_all(&body, &reply.body) {
        eprintln!("could not write the response body: {e:?}");
    }
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("could not finish the response body: {e:?}");
    }
    out.set(response);
}

fn write_all(body: &OutgoingBody, mut bytes: &[u8]) -> Result<(), String> {
    let stream = body.write().expect("the body stream is taken once");
    let failed = |e| format!("{e:?}");
    while !bytes.is_empty() {
        let room = stream.check_write().map_err(failed)? as usize;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let (now, later) = bytes.split_at(room.min(bytes.len()));
        stream.write(now).map_err(failed)?;
        bytes = later;
    }
    stream.flush().map_err(failed)
}
