//! [`Dropped`]: the request fields a translation could not carry to the target API. The gateway
//! names them in the `x-gateway-dropped` answer header and a debug log, so nothing is lost
//! silently.

/// Names of request fields (OpenAI Chat Completions names, e.g. `"logprobs"`, `"n"`,
/// `"image_url"`) that were left out of a translated request, in the order first met, each once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped(Vec<&'static str>);

impl Dropped {
    /// Record a field (a second push of the same name does nothing).
    pub fn push(&mut self, field: &'static str) {
        if !self.0.contains(&field) {
            tracing::debug!(
                field,
                "dropped a request field the upstream API cannot carry"
            );
            self.0.push(field);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().copied()
    }

    /// The names joined by `sep` (the header value uses `","`).
    pub fn join(&self, sep: &str) -> String {
        self.0.join(sep)
    }

    /// Add the `x-gateway-dropped` header naming the fields, when there are any.
    pub fn set_header(&self, headers: &mut http::HeaderMap) {
        if self.0.is_empty() {
            return;
        }
        if let Ok(v) = http::HeaderValue::from_str(&self.join(",")) {
            headers.insert(crate::headers::X_GATEWAY_DROPPED, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_without_duplicates() {
        let mut d = Dropped::default();
        assert!(d.is_empty());
        d.push("n");
        d.push("logprobs");
        d.push("n");
        assert_eq!(d.iter().collect::<Vec<_>>(), ["n", "logprobs"]);
        assert_eq!(d.join(","), "n,logprobs");
    }
}
