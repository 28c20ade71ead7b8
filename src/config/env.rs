//! Where `${VAR}` in the config comes from: an [`Env`] handed to the parser (the process environment in
//! production, a map in tests), never a global.

use std::collections::HashMap;

/// A source of variables.
pub trait Env {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Expands `${NAME}` from `env`. `$$` is a literal `$`. The error names the variable, never a value.
pub fn expand(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}: write ${{NAME}}"))?;
            let name = &body[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "${{{name}}} is not a valid variable reference: use letters, digits and '_'"
                ));
            }
            let value = env.var(name).ok_or_else(|| {
                format!("environment variable {name} is not set (referenced as ${{{name}}}): export it, or remove the reference")
            })?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_escapes() {
        let env = HashMap::from([("TOKEN".to_owned(), "s3cret".to_owned())]);
        assert_eq!(expand("Bearer ${TOKEN}", &env).unwrap(), "Bearer s3cret");
        assert_eq!(expand("$$5 and $x", &env).unwrap(), "$5 and $x");
        let err = expand("${MISSING}", &env).unwrap_err();
        assert!(err.contains("MISSING is not set"), "{err}");
        assert!(expand("${OPEN", &env).is_err());
    }
}
