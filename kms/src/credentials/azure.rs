//! Azure: the instance metadata service's managed-identity token for Key Vault, cached until shortly before its
//! `expires_in`.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::http::{HttpRequest, Transport};
use super::{oauth_token, CredentialsError, CredentialsErrorKind, CredentialsFetcher};

/// The Azure instance metadata service's managed-identity token endpoint, for Key Vault.
pub const AZURE_TOKEN_URL: &str =
    "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";

impl CredentialsFetcher {
    pub(crate) async fn azure_with<T: Transport>(&self, transport: &T) -> Result<Zeroizing<String>, CredentialsError> {
        if let Some(token) = self.azure_cache.get(self.azure_refresh_margin) {
            return Ok(token);
        }
        let fail = |kind| CredentialsError::new("azure", kind);
        let fetched_at = SystemTime::now();
        let request = HttpRequest::get(&self.azure_url).header("Metadata", "true").header("Accept", "application/json");
        let response = transport.send(request).await.map_err(fail)?;
        let reply = oauth_token(&self.azure_url, &response).map_err(fail)?;
        let expires_in: Duration = reply.expires_in.ok_or_else(|| {
            fail(CredentialsErrorKind::Reply { url: self.azure_url.clone(), message: "no expires_in".into() })
        })?;
        // An expiry past what SystemTime holds: the token never expires, as far as can be told.
        self.azure_cache.put(reply.token.clone(), fetched_at.checked_add(expires_in));
        Ok(reply.token)
    }
}
