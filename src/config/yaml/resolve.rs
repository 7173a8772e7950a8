//! Plain scalars resolved per the YAML 1.2 core schema (null, bool, int, float, else string).

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str,
}

fn all_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

fn is_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() && all_digits(frac, 10))
                || (all_digits(int, 10) && (frac.is_empty() || all_digits(frac, 10)))
        }
        None => all_digits(mantissa, 10),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => all_digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10),
    };
    mantissa_ok && exp_ok
}

/// Resolves a plain scalar per the YAML 1.2 core schema.
pub(crate) fn resolve(s: &str) -> Resolved {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    if let Some(h) = s.strip_prefix("0x") {
        if all_digits(h, 16) {
            return match u64::from_str_radix(h, 16) {
                Ok(v) => Resolved::UInt(v),
                Err(_) => Resolved::Str,
            };
        }
        return Resolved::Str;
    }
    if let Some(o) = s.strip_prefix("0o") {
        if all_digits(o, 8) {
            return match u64::from_str_radix(o, 8) {
                Ok(v) => Resolved::UInt(v),
                Err(_) => Resolved::Str,
            };
        }
        return Resolved::Str;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Resolved::Float(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        _ => {}
    }
    if all_digits(unsigned, 10) {
        if let Ok(v) = s.parse::<i64>() {
            return if v >= 0 {
                Resolved::UInt(v as u64)
            } else {
                Resolved::Int(v)
            };
        }
        if let Ok(v) = unsigned.parse::<u64>()
            && !s.starts_with('-')
        {
            return Resolved::UInt(v);
        }
    }
    if is_float(s)
        && let Ok(v) = s.parse::<f64>()
    {
        return Resolved::Float(v);
    }
    Resolved::Str
}
