//! The AWS credential chain, in the order of MongoDB's authentication spec: a custom provider (which replaces the
//! rest), the environment, `AssumeRoleWithWebIdentity`, ECS, EC2 IMDSv2. Written once, generic over the
//! [`Transport`]; each step's request builder and reply parser is a plain function.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::http::{error_body, HttpRequest, HttpResponse, Transport};
use super::{AwsCredentials, AwsStep, CredentialsError, CredentialsErrorKind, CredentialsFetcher, MAX_TOKEN_FILE};

/// The default STS endpoint of [`CredentialsFetcher::aws_sts_endpoint`].
pub const AWS_STS_URL: &str = "https://sts.amazonaws.com/";

/// The default ECS endpoint of [`CredentialsFetcher::aws_ecs_endpoint`], to which
/// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is appended.
pub const AWS_ECS_URL: &str = "http://169.254.170.2";

/// The default EC2 instance metadata endpoint of [`CredentialsFetcher::aws_imds_endpoint`].
pub const AWS_IMDS_URL: &str = "http://169.254.169.254";

/// How long an IMDSv2 session token is asked to live.
const IMDS_TOKEN_TTL: &str = "30";

/// What one step found: credentials, or nothing to try (and why), after which the chain goes on.
enum Found {
    Credentials(AwsCredentials),
    NotConfigured(String),
}

impl CredentialsFetcher {
    /// The chain, for either transport.
    pub(crate) async fn aws_with<T: Transport>(&self, transport: &T) -> Result<AwsCredentials, CredentialsError> {
        let fail = |kind| CredentialsError::new("aws", kind);
        if let Some(provider) = &self.aws_provider {
            // The custom provider replaces the chain, and is not cached: it caches as it sees fit.
            return transport
                .custom_aws(provider.as_ref())
                .await
                .map_err(|source| fail(CredentialsErrorKind::AwsProvider(source)));
        }
        if let Some(cached) = self.aws_cache.get(self.aws_refresh_margin) {
            return Ok(cached);
        }
        // Feature aws-sdk: aws-config's default chain instead of the steps below.
        #[cfg(feature = "aws-sdk")]
        let credentials = transport.aws_sdk().await.map_err(fail)?;
        #[cfg(not(feature = "aws-sdk"))]
        let credentials = self.aws_chain(transport, fail).await?;
        if let Some(expiration) = credentials.expiration() {
            self.aws_cache.put(credentials.clone(), Some(expiration));
        }
        Ok(credentials)
    }

    /// The chain's own steps (without feature `aws-sdk`).
    #[cfg_attr(feature = "aws-sdk", allow(dead_code))]
    async fn aws_chain<T: Transport>(
        &self,
        transport: &T,
        fail: impl Fn(CredentialsErrorKind) -> CredentialsError,
    ) -> Result<AwsCredentials, CredentialsError> {
        let mut skipped = Vec::new();
        for step in [AwsStep::Environment, AwsStep::WebIdentity, AwsStep::Ecs, AwsStep::Ec2] {
            let found = match step {
                AwsStep::Environment => Ok(self.aws_environment()),
                AwsStep::WebIdentity => self.aws_web_identity(transport).await,
                AwsStep::Ecs => self.aws_ecs(transport).await,
                AwsStep::Ec2 => self.aws_ec2(transport).await.map(Found::Credentials),
            };
            match found {
                Ok(Found::Credentials(credentials)) => return Ok(credentials),
                Ok(Found::NotConfigured(why)) => skipped.push((step, why)),
                // A step that is configured and fails ends the chain: its error is the one to fix.
                Err(source) => {
                    return Err(fail(CredentialsErrorKind::NoAwsCredentials {
                        skipped,
                        step,
                        source: Box::new(source),
                    }))
                }
            }
        }
        unreachable!("the EC2 step finds credentials or fails")
    }

    fn var(&self, name: &str) -> Option<Zeroizing<String>> {
        (self.env)(name).filter(|v| !v.is_empty()).map(Zeroizing::new)
    }

    fn aws_environment(&self) -> Found {
        match (self.var("AWS_ACCESS_KEY_ID"), self.var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                Found::Credentials(AwsCredentials::from_parts(id, secret, self.var("AWS_SESSION_TOKEN"), None))
            }
            (None, None) => Found::NotConfigured("environment not set".into()),
            (Some(_), None) => Found::NotConfigured("environment: AWS_SECRET_ACCESS_KEY is not set".into()),
            (None, Some(_)) => Found::NotConfigured("environment: AWS_ACCESS_KEY_ID is not set".into()),
        }
    }

    async fn aws_web_identity<T: Transport>(&self, transport: &T) -> Result<Found, CredentialsErrorKind> {
        let (Some(token_file), Some(role_arn)) = (self.var("AWS_WEB_IDENTITY_TOKEN_FILE"), self.var("AWS_ROLE_ARN"))
        else {
            return Ok(Found::NotConfigured("web identity not configured".into()));
        };
        let token = read_token_file(&token_file)?;
        let session_name = self.var("AWS_ROLE_SESSION_NAME").map(|s| s.as_str().to_owned()).unwrap_or_else(|| {
            let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
            format!("mongocrypt-rs-{nanos}")
        });
        let request = sts_request(&self.aws_sts_url, &role_arn, &session_name, token.trim());
        let response = transport.send(request).await?;
        parse_sts(&self.aws_sts_url, &response).map(Found::Credentials)
    }

    async fn aws_ecs<T: Transport>(&self, transport: &T) -> Result<Found, CredentialsErrorKind> {
        let url = if let Some(relative) = self.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            format!("{}{}", self.aws_ecs_url.trim_end_matches('/'), relative.as_str())
        } else if let Some(full) = self.var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            full.as_str().to_owned()
        } else {
            return Ok(Found::NotConfigured("ECS not configured".into()));
        };
        let mut request = HttpRequest::get(&url).header("Accept", "application/json");
        let authorization = match self.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(path) => Some(read_token_file(&path)?),
            None => self.var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization.trim());
        }
        let response = transport.send(request).await?;
        parse_credentials_json(&url, &response).map(Found::Credentials)
    }

    async fn aws_ec2<T: Transport>(&self, transport: &T) -> Result<AwsCredentials, CredentialsErrorKind> {
        let base = self.aws_imds_url.trim_end_matches('/');
        let token_url = format!("{base}/latest/api/token");
        let request = HttpRequest::put(&token_url).header("X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL);
        let response = ok(&token_url, transport.send(request).await?)?;
        let token = Zeroizing::new(text(&token_url, &response)?.trim().to_owned());
        if token.is_empty() {
            return Err(reply(&token_url, "empty session token"));
        }

        let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
        let request = HttpRequest::get(&roles_url).header("X-aws-ec2-metadata-token", token.as_str());
        let response = ok(&roles_url, transport.send(request).await?)?;
        let role = text(&roles_url, &response)?.lines().next().unwrap_or_default().trim().to_owned();
        if role.is_empty() {
            return Err(reply(&roles_url, "no role is attached to the instance"));
        }

        let role_url = format!("{roles_url}{role}");
        let request = HttpRequest::get(&role_url).header("X-aws-ec2-metadata-token", token.as_str());
        let response = transport.send(request).await?;
        parse_credentials_json(&role_url, &response)
    }
}

/// A token file named by the environment: a regular file of at most [`MAX_TOKEN_FILE`] bytes, UTF-8.
fn read_token_file(path: &str) -> Result<Zeroizing<String>, CredentialsErrorKind> {
    use crate::file::{read_bounded, FileError};
    let shown = || path.to_owned();
    let bytes = read_bounded(std::path::Path::new(path), MAX_TOKEN_FILE).map_err(|e| match e {
        FileError::Io(source) => CredentialsErrorKind::File { path: shown(), source },
        FileError::NotAFile => CredentialsErrorKind::NotAFile { path: shown() },
        FileError::TooLarge(limit) => CredentialsErrorKind::FileTooLarge { path: shown(), limit },
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(e) => Err(CredentialsErrorKind::File {
            path: shown(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
    }
}

/// `AssumeRoleWithWebIdentity` as a form POST (the token stays out of URLs and logs), JSON reply.
fn sts_request(url: &str, role_arn: &str, session_name: &str, token: &str) -> HttpRequest {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", role_arn)
        .append_pair("RoleSessionName", session_name)
        .append_pair("WebIdentityToken", token)
        .finish();
    HttpRequest::post(url, body.into_bytes())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
}

fn reply(url: &str, message: impl Into<String>) -> CredentialsErrorKind {
    CredentialsErrorKind::Reply { url: url.to_owned(), message: message.into() }
}

/// The response if its status is 200, else the HTTP error with the start of its body.
fn ok(url: &str, response: HttpResponse) -> Result<HttpResponse, CredentialsErrorKind> {
    if response.status == 200 {
        Ok(response)
    } else {
        Err(CredentialsErrorKind::Http {
            url: url.to_owned(),
            status: response.status,
            body: error_body(&response.body),
        })
    }
}

fn text<'a>(url: &str, response: &'a HttpResponse) -> Result<&'a str, CredentialsErrorKind> {
    std::str::from_utf8(&response.body).map_err(|_| reply(url, "reply is not text"))
}

fn json(url: &str, response: &HttpResponse) -> Result<serde_json::Value, CredentialsErrorKind> {
    if response.status != 200 {
        return Err(CredentialsErrorKind::Http {
            url: url.to_owned(),
            status: response.status,
            body: error_body(&response.body),
        });
    }
    serde_json::from_slice(&response.body).map_err(|e| reply(url, format!("reply is not JSON: {e}")))
}

/// ECS and EC2 role credentials: `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration": RFC 3339}`.
pub(super) fn parse_credentials_json(
    url: &str,
    response: &HttpResponse,
) -> Result<AwsCredentials, CredentialsErrorKind> {
    let json = json(url, response)?;
    credentials_from(url, &json, "Token")
}

/// STS: `{"AssumeRoleWithWebIdentityResponse": {"AssumeRoleWithWebIdentityResult": {"Credentials": {...}}}}`,
/// the expiration in seconds since the epoch.
pub(super) fn parse_sts(url: &str, response: &HttpResponse) -> Result<AwsCredentials, CredentialsErrorKind> {
    let json = json(url, response)?;
    let credentials = json
        .pointer("/AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials")
        .ok_or_else(|| reply(url, "reply has no AssumeRoleWithWebIdentityResult.Credentials"))?;
    credentials_from(url, credentials, "SessionToken")
}

fn credentials_from(
    url: &str,
    json: &serde_json::Value,
    token_field: &str,
) -> Result<AwsCredentials, CredentialsErrorKind> {
    let field = |name: &str| match json.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(Zeroizing::new(s.clone())),
        _ => None,
    };
    let id = field("AccessKeyId").ok_or_else(|| reply(url, "reply has no AccessKeyId"))?;
    let secret = field("SecretAccessKey").ok_or_else(|| reply(url, "reply has no SecretAccessKey"))?;
    let expiration = match json.get("Expiration") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            crate::bson::DateTime::parse_rfc3339_str(s)
                .map_err(|e| reply(url, format!("bad Expiration {}: {e}", error_body(s.as_bytes()))))?
                .to_system_time(),
        ),
        Some(serde_json::Value::Number(n)) => {
            let seconds = n.as_f64().filter(|s| *s >= 0.0).ok_or_else(|| reply(url, format!("bad Expiration {n}")))?;
            // Past what Duration or SystemTime holds (1e300, 1.9e19, 9.3e18 seconds): no expiry known, so the
            // credentials are used and not cached, as when the reply has no Expiration.
            Duration::try_from_secs_f64(seconds).ok().and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
        }
        // The server's value, quoted as an error body is: cut, with its length.
        Some(other) => return Err(reply(url, format!("bad Expiration {}", error_body(other.to_string().as_bytes())))),
    };
    Ok(AwsCredentials::from_parts(id, secret, field(token_field), expiration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, body: Zeroizing::new(body.as_bytes().to_vec()) }
    }

    #[test]
    fn ecs_and_imds_replies_parse() {
        let c = parse_credentials_json(
            "u",
            &response(
                200,
                r#"{"Code": "Success", "AccessKeyId": "AKID", "SecretAccessKey": "S", "Token": "T", "Expiration": "2030-01-02T03:04:05Z"}"#,
            ),
        )
        .unwrap();
        assert_eq!((c.access_key_id(), c.secret_access_key(), c.session_token()), ("AKID", "S", Some("T")));
        assert_eq!(c.expiration().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_893_553_445);
        let err = parse_credentials_json("u", &response(200, r#"{"SecretAccessKey": "S"}"#)).err().unwrap();
        assert!(err.to_string().contains("no AccessKeyId"), "{err}");
        for expiration in [format!("\"{}\"", "9".repeat(100_000)), format!("[{}0]", "0,".repeat(50_000))] {
            let body = format!(r#"{{"AccessKeyId": "A", "SecretAccessKey": "S", "Expiration": {expiration}}}"#);
            let err = parse_credentials_json("u", &response(200, &body)).err().unwrap().to_string();
            assert!(err.len() < 500 && err.contains("bad Expiration") && err.contains(" bytes)"), "{err}");
        }
        let err = parse_credentials_json("u", &response(404, "")).err().unwrap();
        assert_eq!(err.to_string(), "u answered HTTP status 404: (empty body)");
    }

    /// `Expiration` at the edges of time, as a number and as a string: never a panic; past what `SystemTime`
    /// holds, no expiry (not cached); negative or not a date, a typed error.
    #[test]
    fn expirations_at_the_edges_of_time_never_panic() {
        let parse = |expiration: &str| {
            let body = format!(r#"{{"AccessKeyId": "A", "SecretAccessKey": "S", "Expiration": {expiration}}}"#);
            parse_credentials_json("u", &response(200, &body)).map(|c| c.expiration())
        };
        let seconds = |e: Option<SystemTime>| e.unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(seconds(parse("0").unwrap()), Duration::ZERO);
        assert_eq!(seconds(parse("1e-9").unwrap()), Duration::from_nanos(1));
        assert_eq!(seconds(parse("1.5").unwrap()), Duration::from_millis(1500));
        for absurd in ["1e300", "1.9e19", "9.3e18", "18446744073709551615", "1.7976931348623157e308"] {
            assert_eq!(parse(absurd).unwrap(), None, "{absurd}");
        }
        for bad in ["-1", "-1e300", "-0.5", r#""1e300""#, r#""NaN""#, r#""-1""#, r#""""#, "true", "[]"] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains("bad Expiration"), "{bad}: {err}");
        }
        // NaN and the infinities are not JSON: the reply is refused as such.
        for not_json in ["NaN", "Infinity", "-Infinity"] {
            assert!(parse(not_json).unwrap_err().to_string().contains("not JSON"), "{not_json}");
        }
        assert!(parse(r#""9999-12-31T23:59:59Z""#).unwrap().is_some());
        assert!(parse(r#""0001-01-01T00:00:00Z""#).unwrap().is_some());
        // STS's numeric form goes through the same code.
        let body = r#"{"AssumeRoleWithWebIdentityResponse": {"AssumeRoleWithWebIdentityResult": {"Credentials":
            {"AccessKeyId": "ASIA", "SecretAccessKey": "S", "Expiration": 1e300}}}}"#;
        assert_eq!(parse_sts("u", &response(200, body)).unwrap().expiration(), None);
    }

    #[test]
    fn sts_reply_parses() {
        let body = r#"{"AssumeRoleWithWebIdentityResponse": {"AssumeRoleWithWebIdentityResult": {"Credentials":
            {"AccessKeyId": "ASIA", "SecretAccessKey": "S", "SessionToken": "T", "Expiration": 1.8935534E9}}}}"#;
        let c = parse_sts("u", &response(200, body)).unwrap();
        assert_eq!((c.access_key_id(), c.session_token()), ("ASIA", Some("T")));
        assert_eq!(c.expiration().unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_893_553_400);
        let request = sts_request("u", "arn:aws:iam::1:role/r", "s", "a.b/c");
        let body = std::str::from_utf8(&request.body).unwrap();
        assert!(
            body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr") && body.contains("WebIdentityToken=a.b%2Fc")
        );
    }
}
