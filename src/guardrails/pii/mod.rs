//! The PII detectors: which entities exist (named as in the configuration), and one scan of a
//! text that reports each value found with its byte range. Each detector has its own prefilter
//! (a digit, an `@`, a `:`, a country code, a key prefix) so a text without candidates costs one
//! pass over its bytes per detector and no allocation. Detectors report; they never log.

mod addr;
mod iban;
mod numbers;
mod secrets;

use std::ops::Range;

/// A kind of personal or secret data, named as in `guardrails[].entities`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    Email,
    Phone,
    CreditCard,
    Iban,
    IpAddress,
    Secret,
}

impl Entity {
    pub const ALL: [Entity; 6] = [
        Entity::Email,
        Entity::Phone,
        Entity::CreditCard,
        Entity::Iban,
        Entity::IpAddress,
        Entity::Secret,
    ];

    /// The configuration's name (`credit_card`).
    pub fn name(self) -> &'static str {
        match self {
            Entity::Email => "email",
            Entity::Phone => "phone",
            Entity::CreditCard => "credit_card",
            Entity::Iban => "iban",
            Entity::IpAddress => "ip_address",
            Entity::Secret => "secret",
        }
    }

    /// The entity named so in the configuration.
    pub fn from_name(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The label of its placeholders (`CREDIT_CARD` in `[CREDIT_CARD_1]`).
    pub fn label(self) -> &'static str {
        match self {
            Entity::Email => "EMAIL",
            Entity::Phone => "PHONE",
            Entity::CreditCard => "CREDIT_CARD",
            Entity::Iban => "IBAN",
            Entity::IpAddress => "IP_ADDRESS",
            Entity::Secret => "SECRET",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of entities.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Entities(u8);

impl Entities {
    pub fn all() -> Entities {
        Entities::of(&Entity::ALL)
    }

    pub fn of(list: &[Entity]) -> Entities {
        Entities(list.iter().fold(0, |a, e| a | e.bit()))
    }

    pub fn contains(self, e: Entity) -> bool {
        self.0 & e.bit() != 0
    }

    pub fn insert(&mut self, e: Entity) {
        self.0 |= e.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Entity> {
        Entity::ALL.into_iter().filter(move |e| self.contains(*e))
    }
}

impl std::fmt::Debug for Entities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Entity::name))
            .finish()
    }
}

/// Report every value of the entities in `want` found in `text`, in no particular order;
/// values of different entities may overlap (the caller keeps the first, longest one).
pub fn scan(text: &str, want: Entities, emit: &mut dyn FnMut(Range<usize>, Entity)) {
    if want.contains(Entity::Email) {
        addr::emails(text, emit);
    }
    if want.contains(Entity::CreditCard)
        || want.contains(Entity::Phone)
        || want.contains(Entity::IpAddress)
    {
        numbers::scan(text, want, emit);
    }
    if want.contains(Entity::IpAddress) {
        addr::ipv6(text, emit);
    }
    if want.contains(Entity::Iban) {
        iban::scan(text, emit);
    }
    if want.contains(Entity::Secret) {
        secrets::scan(text, emit);
    }
}

/// Test helpers shared by the detectors' tests and the property tests.
#[cfg(test)]
pub(crate) mod testing {
    pub(crate) use super::iban::check_digits;
    pub(crate) use super::numbers::{issuer_accepts, luhn};
}
