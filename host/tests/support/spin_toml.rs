//! The one shape of the Spin manifests the tests write: an application with its variables, one
//! HTTP route to one component, and whatever fields and sections a case adds. nanohost's own unit
//! tests (`check`, `manifest`) compile this file too, so they and the binaries' tests read
//! manifests built the same way.
#![allow(dead_code)]

use std::fmt;

/// `[application.trigger.mqtt]` for a broker at `address`, every setting a string as the MQTT
/// trigger plugin's own examples write them.
pub fn mqtt_trigger_settings(address: &str) -> String {
    format!(
        "[application.trigger.mqtt]\naddress = {address:?}\nusername = \"\"\npassword = \"\"\n\
         keep_alive_interval = \"30\""
    )
}

#[derive(Clone, Debug)]
pub struct SpinToml {
    name: String,
    application: Vec<String>,
    variables: Vec<String>,
    route: String,
    component: String,
    fields: Vec<String>,
    sections: Vec<String>,
}

impl SpinToml {
    /// `name`'s HTTP `route` goes to `component`, built from `source`.
    pub fn new(name: &str, route: &str, component: &str, source: &str) -> SpinToml {
        SpinToml {
            name: name.into(),
            application: Vec::new(),
            variables: Vec::new(),
            route: route.into(),
            component: component.into(),
            fields: vec![format!("source = {source:?}")],
            sections: Vec::new(),
        }
    }

    /// Lines after the application's name: its other fields, or `[application.trigger.*]`.
    pub fn application(mut self, lines: &str) -> SpinToml {
        self.application.push(lines.into());
        self
    }

    /// `name = declaration` under `[variables]`.
    pub fn variable(mut self, name: &str, declaration: &str) -> SpinToml {
        self.variables.push(format!("{name} = {declaration}"));
        self
    }

    /// A line of the component's table.
    pub fn field(mut self, line: &str) -> SpinToml {
        self.fields.push(line.into());
        self
    }

    /// Tables after the component's (more triggers, `[component.x.build]`, ...).
    pub fn section(mut self, text: &str) -> SpinToml {
        self.sections.push(text.into());
        self
    }
}

impl fmt::Display for SpinToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "spin_manifest_version = 2\n[application]")?;
        writeln!(f, "name = {:?}", self.name)?;
        for lines in &self.application {
            writeln!(f, "{lines}")?;
        }
        if !self.variables.is_empty() {
            writeln!(f, "[variables]\n{}", self.variables.join("\n"))?;
        }
        writeln!(f, "[[trigger.http]]\nroute = {:?}", self.route)?;
        writeln!(f, "component = {:?}", self.component)?;
        writeln!(
            f,
            "[component.{}]\n{}",
            self.component,
            self.fields.join("\n")
        )?;
        for text in &self.sections {
            writeln!(f, "{text}")?;
        }
        Ok(())
    }
}
