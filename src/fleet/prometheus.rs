//! Instant queries against a Prometheus HTTP API (`/api/v1/query`), the fleet's memory.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::blocking::Client;
use serde::Deserialize;

use super::FleetError;

/// How long one query may take, connecting included: a fleet view or a gate that hangs on
/// a stuck Prometheus helps nobody.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read: a query result for a very large fleet, not a runaway body.
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Every label of the series (`__name__` included when the result has it).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of `name`, empty when the series lacks it.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A Prometheus server, asked over one kept-alive client.
#[derive(Debug)]
pub struct Prometheus {
    base: reqwest::Url,
    client: Client,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Prometheus {
    /// A client for the server at `url` (its base URL, e.g. `http://prometheus:9090`).
    pub fn new(url: &str) -> Result<Prometheus, FleetError> {
        let bad = |reason: String| FleetError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let mut base = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad(format!(
                "the scheme is {:?}, expected http or https",
                base.scheme()
            )));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(QUERY_TIMEOUT)
            .user_agent(format!("converge/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(format!("cannot build an HTTP client: {e}")))?;
        Ok(Prometheus { base, client })
    }

    /// The base URL, as given.
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The samples of the instant query `expr`, evaluated now.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, FleetError> {
        let url = self
            .base
            .join("api/v1/query")
            .expect("a relative path joins");
        let failed = |reason: String| FleetError::Query {
            url: self.url().to_owned(),
            query: expr.to_owned(),
            reason,
        };
        let response = self
            .client
            .get(url)
            .query(&[("query", expr)])
            .send()
            .map_err(|e| FleetError::Unreachable {
                url: self.url().to_owned(),
                reason: crate::bundle::error_chain(&e),
            })?;
        let status = response.status();
        let mut body = Vec::new();
        use std::io::Read as _;
        response
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut body)
            .map_err(|e| failed(format!("reading the answer: {e}")))?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            failed(format!(
                "HTTP {status}, not a Prometheus API answer ({e}); is this the base URL of a Prometheus server?"
            ))
        })?;
        if answer.status != "success" {
            return Err(failed(answer.error.unwrap_or_else(|| {
                format!("HTTP {status}, status {:?}", answer.status)
            })));
        }
        let data = answer
            .data
            .ok_or_else(|| failed("the answer holds no data".to_owned()))?;
        if data.result_type != "vector" {
            return Err(failed(format!(
                "the result is a {}, expected an instant vector",
                data.result_type
            )));
        }
        data.result
            .into_iter()
            .map(|s| {
                let value = s.value.1.parse().map_err(|_| {
                    failed(format!("the sample value {:?} is not a number", s.value.1))
                })?;
                Ok(Sample {
                    labels: s.metric,
                    value,
                })
            })
            .collect()
    }
}
