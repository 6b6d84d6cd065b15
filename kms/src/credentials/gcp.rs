//! GCP: the metadata server's token for the instance's default service account.

use zeroize::Zeroizing;

use super::http::{HttpRequest, Transport};
use super::{oauth_token, CredentialsError, CredentialsFetcher};

/// The GCP metadata server's token endpoint for the default service account.
pub const GCP_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";

impl CredentialsFetcher {
    /// A fresh token each time (libmongocrypt asks once per operation that needs one).
    pub(crate) async fn gcp_with<T: Transport>(&self, transport: &T) -> Result<Zeroizing<String>, CredentialsError> {
        let request = HttpRequest::get(&self.gcp_url).header("Metadata-Flavor", "Google");
        let response = transport.send(request).await.map_err(|kind| CredentialsError::new("gcp", kind))?;
        let reply = oauth_token(&self.gcp_url, &response).map_err(|kind| CredentialsError::new("gcp", kind))?;
        Ok(reply.token)
    }
}
