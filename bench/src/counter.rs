//! Round trips per operation, counted outside the module: a shell command
//! (`--count-cmd`) prints a request counter of the server, e.g. hsmlink's
//! `hsmlink-server admin ... metrics` (Prometheus text, where
//! `hsmlink_requests_total` counts every PKCS#11 request the server
//! answered, length queries included). The tool reads it, runs a few
//! single-threaded operations, reads it again: the difference over the
//! operations is the round trips per operation. Nothing else may use the
//! server meanwhile (the tool's own threads are stopped).

use std::process::Command;

/// A counter read by running a command.
#[derive(Debug, Clone)]
pub struct Counter {
    command: String,
    metric: String,
}

impl Counter {
    pub fn new(command: String, metric: String) -> Self {
        Counter { command, metric }
    }

    /// What the record says about where the count came from.
    pub fn source(&self) -> String {
        format!("{} from `{}`", self.metric, self.command)
    }

    /// The counter's value now.
    pub fn read(&self) -> Result<f64, String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .output()
            .map_err(|e| format!("--count-cmd: cannot run sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "--count-cmd exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        parse(&String::from_utf8_lossy(&out.stdout), &self.metric)
            .ok_or_else(|| format!("--count-cmd printed no value of {}", self.metric))
    }
}

/// The sum of every sample of `metric` in Prometheus text (`name value` or
/// `name{labels} value`), or the output itself if it is one number.
pub fn parse(text: &str, metric: &str) -> Option<f64> {
    if let Ok(value) = text.trim().parse::<f64>() {
        return Some(value);
    }
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        // The name must end here: "metric_total" is not "metric".
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = match rest.rfind('}') {
            Some(end) if rest.starts_with('{') => &rest[end + 1..],
            _ => rest,
        };
        // A sample may end with a timestamp: take the first field.
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sums_every_label_set_of_the_metric() {
        let text = "# HELP hsmlink_requests_total PKCS#11 requests answered, by result.\n\
                    # TYPE hsmlink_requests_total counter\n\
                    hsmlink_requests_total{result=\"CKR_OK\"} 120\n\
                    hsmlink_requests_total{result=\"CKR_BUFFER_TOO_SMALL\"} 3\n\
                    hsmlink_requests_totally_else 99\n\
                    hsmlink_connections_open 4\n";
        assert_eq!(parse(text, "hsmlink_requests_total"), Some(123.0));
        assert_eq!(parse(text, "hsmlink_connections_open"), Some(4.0));
        assert_eq!(parse(text, "absent"), None);
        assert_eq!(parse(" 42\n", "anything"), Some(42.0));
    }
}
