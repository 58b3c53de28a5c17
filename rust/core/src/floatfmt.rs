//! Python `repr(float)` in Rust. Fingerprints must print floats exactly as Python does
//! (`1e-05`, `0.00392156862745098`, `1.0`); `serde_json`/`ryu` and Rust's `Display` differ.

/// Python's `repr` of a finite f64. Panics on NaN/inf (callers validate first).
pub fn py_float_repr(x: f64) -> String {
    assert!(x.is_finite(), "py_float_repr needs a finite value");
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` prints the shortest round-tripping digits, as Python's repr does.
    let e_form = format!("{:e}", x.abs());
    let (mantissa, exp) = e_form.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    let n = digits.len() as i32;
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            if n <= exp + 1 {
                format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
            } else {
                let (int, frac) = digits.split_at((exp + 1) as usize);
                format!("{int}.{frac}")
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{first}{frac}e{esign}{:02}", exp.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::py_float_repr as r;

    #[test]
    fn matches_python_repr() {
        // Expected strings are Python 3.11's repr of the same literals.
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.0, "-2.0"),
            (1e-5, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00392156862745098, "0.00392156862745098"),
            (1.0 / 255.0, "0.00392156862745098"),
            (0.48145466, "0.48145466"),
            (0.26862954, "0.26862954"),
            (123.456, "123.456"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.1, "0.1"),
            (210.0, "210.0"),
            (333.3333333333333, "333.3333333333333"),
        ];
        for (x, want) in cases {
            assert_eq!(r(x), want, "repr({x:e})");
        }
    }
}
