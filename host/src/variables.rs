//! `fermyon:spin/variables@2.0.0` and Spin 4's `spin:variables/variables@3.0.0` (the same `get`,
//! async in WIT: answered at once here, from memory): a component reads the entries of its own `variables` table,
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
