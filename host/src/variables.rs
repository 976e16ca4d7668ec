//! `fermyon:spin/variables@2.0.0`: a component reads the entries of its own `variables` table,
//! resolved at start-up (see `expressions`). Configuration: the resolved table, per component;
//! no per-app state; per-instance state: a reference to that table.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use self::bindings::fermyon::spin2_0_0::variables::{self, Error};

/// Bindings of just this capability's interface.
mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "nanohost:host/variables",
        imports: { default: async | trappable },
    });
}

/// Per-instance state.
pub struct VariablesInstance {
    component_id: Arc<str>,
    values: Arc<HashMap<String, String>>,
}

impl VariablesInstance {
    pub fn new(component_id: Arc<str>, values: Arc<HashMap<String, String>>) -> VariablesInstance {
        VariablesInstance {
            component_id,
            values,
        }
    }
}

/// Links `fermyon:spin/variables@2.0.0`; `get` finds this capability's state in the store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut VariablesInstance,
) -> anyhow::Result<()> {
    variables::add_to_linker::<T, HasSelf<VariablesInstance>>(linker, get)?;
    Ok(())
}

impl variables::Host for VariablesInstance {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(lookup(&self.component_id, &self.values, name))
    }
}

fn lookup(
    component: &str,
    values: &HashMap<String, String>,
    name: String,
) -> Result<String, Error> {
    if crate::manifest::check_variable_name(&name).is_err() {
        return Err(Error::InvalidName(name));
    }
    match values.get(&name) {
        Some(v) => Ok(v.clone()),
        // Spin's message for a name the component did not declare.
        None => Err(Error::Undefined(format!(
            "no variable for {component:?}.{name:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_reads_only_its_own_table() {
        let values = HashMap::from([("orders_topic".to_string(), "orders/placed".to_string())]);
        assert_eq!(
            lookup("app", &values, "orders_topic".into()).unwrap(),
            "orders/placed"
        );
        match lookup("app", &values, "mqtt_password".into()) {
            Err(Error::Undefined(m)) => assert!(m.contains("mqtt_password"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup("app", &values, "Not-Valid".into()),
            Err(Error::InvalidName(_))
        ));
    }
}
