//! Bearer credentials (X2): `KTSU_INTERNAL_TOKEN` on service-to-service routes and
//! `KTSU_API_KEY` on the orchestrator's management routes. Compared in constant time; an unset
//! credential leaves the routes open.

use crate::api_error::ApiError;
use crate::secret::{constant_time_eq, Secret};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};

/// Checks `Authorization: Bearer <expected>` (the prefix is case-sensitive, one space).
/// `None` means "no credential configured": every request passes.
pub fn check_bearer(headers: &HeaderMap, expected: Option<&Secret>) -> Result<(), ApiError> {
    let Some(expected) = expected.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized_bearer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn open_when_unset() {
        assert!(check_bearer(&headers(None), None).is_ok());
        assert!(check_bearer(&headers(None), Some(&Secret::new(""))).is_ok());
    }

    #[test]
    fn exact_bearer_only() {
        let token = Secret::new("s3cret-token");
        assert!(check_bearer(&headers(Some("Bearer s3cret-token")), Some(&token)).is_ok());
        for bad in [
            None,
            Some("bearer s3cret-token"),
            Some("Bearer  s3cret-token"),
            Some("Bearer other"),
            Some("s3cret-token"),
        ] {
            let err = check_bearer(&headers(bad), Some(&token)).unwrap_err();
            assert_eq!(err.status(), 401);
            assert_eq!(err.code(), "unauthorized");
        }
    }
}
