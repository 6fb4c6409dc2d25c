//! Where a store lives: a SQLite file or a PostgreSQL URL, told apart and
//! shown (with any password masked).

use std::path::Path;

/// Whether `db` names a PostgreSQL database (`postgres://` or
/// `postgresql://` URL) rather than a SQLite file.
pub fn is_postgres_url(db: &Path) -> bool {
    db.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// `db` as it may be shown in logs and `/db/stats`: a PostgreSQL URL with
/// its password masked, a file path as it is.
pub fn display_location(db: &Path) -> String {
    match db.to_str() {
        Some(url) if is_postgres_url(db) => mask_password(url),
        _ => db.display().to_string(),
    }
}

/// The URL with the password (in the user-info part or a `password=`
/// parameter) replaced by `***`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_wherever_libpq_takes_them() {
        let cases = [
            (
                "postgres://vkv:s3cr%40t@db1:5432,db2:5433/kv?target_session_attrs=read-write",
                "postgres://vkv:***@db1:5432,db2:5433/kv?target_session_attrs=read-write",
            ),
            (
                "postgresql://vkv@db/kv?password=s3cret&connect_timeout=3",
                "postgresql://vkv@db/kv?password=***&connect_timeout=3",
            ),
            ("postgres://db/kv", "postgres://db/kv"),
            ("postgres://u:p@db", "postgres://u:***@db"),
        ];
        for (url, masked) in cases {
            assert_eq!(display_location(Path::new(url)), masked);
        }
        assert_eq!(display_location(Path::new("kv_store.db")), "kv_store.db");
        assert!(!is_postgres_url(Path::new("postgres.db")));
    }
}
