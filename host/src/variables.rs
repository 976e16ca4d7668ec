//! `fermyon:spin/variables@2.0.0`: a component reads the entries of its own `variables` table,
//! resolved at start-up (see `expressions`).

use crate::bindings::spin_host::fermyon::spin2_0_0::variables::{self, Error};
use crate::state::HostState;

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if crate::manifest::check_variable_name(&name).is_err() {
            return Ok(Err(Error::InvalidName(name)));
        }
        Ok(match self.component.variables.get(&name) {
            Some(v) => Ok(v.clone()),
            // Spin's message for a name the component did not declare.
            None => Err(Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.component.id
            ))),
        })
    }
}
