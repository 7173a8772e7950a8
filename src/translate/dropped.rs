//! [`Dropped`]: the request fields a translation could not carry to its target API. The gateway
//! reports them in the `x-gateway-dropped` answer header and a debug log, so nothing the client
//! asked for is left out silently.

/// Names of request fields (or item and tool kinds) left out of a translated request, in the
/// order first met, each once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped(Vec<&'static str>);

impl Dropped {
    /// Record a field; a name already recorded is not repeated.
    pub fn push(&mut self, field: &'static str) {
        if !self.0.contains(&field) {
            tracing::debug!(
                field,
                "dropped request field: the target API cannot carry it"
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

    /// The names joined by `sep` (the header value is `join(",")`).
    pub fn join(&self, sep: &str) -> String {
        self.0.join(sep)
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
        assert_eq!(d.join(","), "n,logprobs");
        assert_eq!(d.iter().collect::<Vec<_>>(), ["n", "logprobs"]);
    }
}
