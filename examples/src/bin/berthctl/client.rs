//! The CRI connection: a tonic channel over the unix socket and a single-threaded tokio
//! runtime that runs each call to its answer or its deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{CtlError, chain};

/// A connected CRI client (RuntimeService and ImageService on one socket).
pub struct Client {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// The deadline of each call (`--timeout`).
    pub timeout: Duration,
    /// Whether `--timeout` was given (long calls such as PullImage have none otherwise).
    pub timeout_given: bool,
}

impl Client {
    /// Connects to the CRI socket at `address` within `timeout`.
    pub fn connect(
        address: &Path,
        timeout: Duration,
        timeout_given: bool,
    ) -> Result<Client, CtlError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CtlError::io("start the tokio runtime for", address, e))?;
        let path: PathBuf = address.to_path_buf();
        let endpoint = Endpoint::from_static("http://[::]:50051").connect_timeout(timeout);
        let channel = rt
            .block_on(
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                })),
            )
            .map_err(|e| CtlError::Connect {
                address: address.to_path_buf(),
                reason: chain(&e),
            })?;
        Ok(Client {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            timeout,
            timeout_given,
        })
    }

    /// A handle on the RuntimeService (cheap: the channel is shared).
    pub fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// A handle on the ImageService.
    pub fn is(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// Runs `fut` on the client's runtime (for callers that combine several calls).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// Runs one call with the `--timeout` deadline.
    pub fn call<T>(
        &self,
        name: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CtlError> {
        self.call_within(name, Some(self.timeout), fut)
    }

    /// Runs one call with a deadline of its own (`None`: none).
    pub fn call_within<T>(
        &self,
        name: &'static str,
        deadline: Option<Duration>,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CtlError> {
        self.rt.block_on(within(name, deadline, fut))
    }
}

/// `fut` to its answer, or [`CtlError::Deadline`] after `deadline`.
pub async fn within<T>(
    name: &'static str,
    deadline: Option<Duration>,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CtlError> {
    let answer = match deadline {
        None => fut.await,
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(a) => a,
            Err(_) => {
                return Err(CtlError::Deadline {
                    call: name,
                    secs: d.as_secs_f64(),
                });
            }
        },
    };
    answer
        .map(tonic::Response::into_inner)
        .map_err(CtlError::Rpc)
}
