//! Changes to a test config as edits of parsed TOML rather than text substitution: a typo in a
//! key or a fixture whose layout shifts then fails loudly (no such table or mirror) instead of
//! silently leaving the config unchanged.

use std::fmt;

use toml::{Table, Value};

/// The `[server]` section with the keys tests change. Written by hand (not by the toml crate)
/// so that the configs built on it keep a fixed layout, which tests of line numbers in error
/// messages rely on.
pub struct ServerSection {
    pub dns_listen: String,
    pub http_listen: String,
    pub tcp_max_connections: Option<usize>,
    pub tcp_max_per_client: Option<usize>,
    pub tcp_idle_timeout: Option<&'static str>,
}

impl Default for ServerSection {
    /// Ephemeral loopback ports for DNS and the monitoring endpoint.
    fn default() -> Self {
        ServerSection {
            dns_listen: "127.0.0.1:0".into(),
            http_listen: "127.0.0.1:0".into(),
            tcp_max_connections: None,
            tcp_max_per_client: None,
            tcp_idle_timeout: None,
        }
    }
}

impl ServerSection {
    /// The monitoring endpoint on a fixed loopback port, for a server started as a process,
    /// which cannot tell the test an ephemeral one.
    pub fn http_port(port: u16) -> Self {
        ServerSection {
            http_listen: format!("127.0.0.1:{port}"),
            ..Self::default()
        }
    }
}

impl fmt::Display for ServerSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[server]")?;
        writeln!(
            f,
            "dns-listen = [{}]",
            Value::from(self.dns_listen.as_str())
        )?;
        writeln!(
            f,
            "http-listen = {}",
            Value::from(self.http_listen.as_str())
        )?;
        if let Some(n) = self.tcp_max_connections {
            writeln!(f, "tcp-max-connections = {n}")?;
        }
        if let Some(n) = self.tcp_max_per_client {
            writeln!(f, "tcp-max-per-client = {n}")?;
        }
        if let Some(t) = self.tcp_idle_timeout {
            writeln!(f, "tcp-idle-timeout = {}", Value::from(t))?;
        }
        writeln!(f, "zones = [\"example.com.zone\"]")
    }
}

/// A config parsed from a fixture's text, edited by table and key, written back with the toml
/// crate. The output is equivalent TOML, not the same text: tests that look for line numbers
/// take them from the rendered text.
#[derive(Clone)]
pub struct Config(Table);

impl Config {
    pub fn parse(text: &str) -> Config {
        Config(
            text.parse()
                .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{text}")),
        )
    }

    /// A top-level table such as `server`, `health` or `geo`, created if absent.
    pub fn table(&mut self, name: &str) -> &mut Table {
        self.0
            .entry(name)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("`{name}` is not a table"))
    }

    pub fn server(&mut self) -> &mut Table {
        self.table("server")
    }

    /// Every `[[mirror]]` (or `[[service]]`) in order.
    pub fn list(&mut self, name: &str) -> &mut Vec<Value> {
        self.0
            .get_mut(name)
            .and_then(Value::as_array_mut)
            .unwrap_or_else(|| panic!("no [[{name}]] in the config"))
    }

    pub fn mirror(&mut self, name: &str) -> &mut Table {
        self.named("mirror", name)
    }

    pub fn service(&mut self, name: &str) -> &mut Table {
        self.named("service", name)
    }

    fn named(&mut self, list: &str, name: &str) -> &mut Table {
        self.list(list)
            .iter_mut()
            .filter_map(Value::as_table_mut)
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no [[{list}]] named {name}"))
    }

    /// Appends a `[[geo.override]]` placing `network` at `lat`/`lon`.
    pub fn geo_override(&mut self, network: &str, lat: f64, lon: f64) -> &mut Self {
        let mut entry = Table::new();
        entry.insert("network".into(), network.into());
        entry.insert("location".into(), location(lat, lon));
        self.table("geo")
            .entry("override")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("geo.override is a list")
            .push(Value::Table(entry));
        self
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&toml::to_string(&self.0).expect("a TOML table serializes"))
    }
}

/// A `[[mirror]]` with no `base-url`: never probed, always routable.
pub fn static_mirror(name: &str, ipv4: &str, lat: f64, lon: f64) -> Value {
    let mut m = Table::new();
    m.insert("name".into(), name.into());
    m.insert("ipv4".into(), strings([ipv4]));
    m.insert("location".into(), location(lat, lon));
    Value::Table(m)
}

fn location(lat: f64, lon: f64) -> Value {
    let mut l = Table::new();
    l.insert("lat".into(), lat.into());
    l.insert("lon".into(), lon.into());
    Value::Table(l)
}

/// A list of strings, as `dns-listen`, `mirrors`, `releases` and `ipv4` take.
pub fn strings<const N: usize>(items: [&str; N]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}
