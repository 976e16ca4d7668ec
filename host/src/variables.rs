//! `fermyon:spin/variables@2.0.0` and Spin 4's `spin:variables/variables@3.0.0` (the same `get`,
//! async in WIT: answered at once here, from memory): a component reads the entries of its own `variables` table,
//! resolved at start-up (see `expressions`). Configuration: the resolved table, per component;
//! no per-app state; per-instance state: a reference to that table.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use self::bindings::fermyon::spin2_0_0::variables::{self, Error};
use crate::secret::Value;

crate::bindings::capability!("nanohost:host/variables", Variables, VariablesInstance, {});

/// Bindings of Spin 4's version: an `async func`, which bindgen makes a concurrent host
/// function (`HostWithStore`, called with an `Accessor`).
mod bindings3 {
    wasmtime::component::bindgen!({
        path: "wit-p3",
        world: "nanohost:host-p3/variables3",
        imports: { default: trappable },
    });
}

/// Per-instance state.
pub struct VariablesInstance {
    component_id: Arc<str>,
    values: Arc<HashMap<String, Value>>,
}

impl VariablesInstance {
    pub fn new(component_id: Arc<str>, values: Arc<HashMap<String, Value>>) -> VariablesInstance {
        VariablesInstance {
            component_id,
            values,
        }
    }
}

/// Links `spin:variables/variables@3.0.0` (Spin 4): only where the engine supports
/// component-model-async (`engine::new_engine_for`), which its `async func` needs.
pub fn add_v3_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut VariablesInstance,
) -> anyhow::Result<()> {
    bindings3::spin::variables::variables::add_to_linker::<T, HasSelf<VariablesInstance>>(
        linker, get,
    )?;
    Ok(())
}

impl bindings3::spin::variables::variables::Host for VariablesInstance {}

impl<T> bindings3::spin::variables::variables::HostWithStore<T> for HasSelf<VariablesInstance> {
    async fn get(
        store: &wasmtime::component::Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, bindings3::spin::variables::variables::Error>> {
        use bindings3::spin::variables::variables::Error as E3;
        let found = store.with(|mut view| {
            let me = view.get();
            lookup(&me.component_id, &me.values, name)
        });
        Ok(found.map_err(|e| match e {
            Error::InvalidName(m) => E3::InvalidName(m),
            Error::Undefined(m) => E3::Undefined(m),
            Error::Provider(m) => E3::Provider(m),
            Error::Other(m) => E3::Other(m),
        }))
    }
}

impl variables::Host for VariablesInstance {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(lookup(&self.component_id, &self.values, name))
    }
}

fn lookup(component: &str, values: &HashMap<String, Value>, name: String) -> Result<String, Error> {
    if crate::manifest::check_variable_name(&name).is_err() {
        return Err(Error::InvalidName(name));
    }
    match values.get(&name) {
        // The one place a secret variable leaves the host: to the component that declared it.
        Some(v) => Ok(v.expose().to_string()),
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
        let values = HashMap::from([
            (
                "orders_topic".to_string(),
                Value::Plain("orders/placed".into()),
            ),
            (
                "mqtt_password".to_string(),
                Value::Secret("hunter2-pw".into()),
            ),
        ]);
        assert_eq!(
            lookup("app", &values, "orders_topic".into()).unwrap(),
            "orders/placed"
        );
        // A secret reaches the guest as it is.
        assert_eq!(
            lookup("app", &values, "mqtt_password".into()).unwrap(),
            "hunter2-pw"
        );
        match lookup("app", &values, "mqtt_pass".into()) {
            Err(Error::Undefined(m)) => assert!(m.contains("mqtt_pass"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup("app", &values, "Not-Valid".into()),
            Err(Error::InvalidName(_))
        ));
    }
}
