//! Media types of OCI and Docker images.

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly several members).
    Gzip,
    /// zstd.
    Zstd,
    /// Not given by a media type (docker-archive layers): found from the first bytes.
    Detect,
}

/// What a descriptor points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Index,
    Manifest,
    Config,
    Layer(Compression),
    Unknown,
}

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Classifies a media type.
pub(crate) fn kind(media_type: &str) -> Kind {
    use Compression::*;
    match media_type {
        OCI_INDEX | "application/vnd.docker.distribution.manifest.list.v2+json" => Kind::Index,
        OCI_MANIFEST | "application/vnd.docker.distribution.manifest.v2+json" => Kind::Manifest,
        "application/vnd.oci.image.config.v1+json"
        | "application/vnd.docker.container.image.v1+json" => Kind::Config,
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Kind::Layer(None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Kind::Layer(Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Kind::Layer(Zstd),
        _ => Kind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types() {
        assert_eq!(
            kind("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
            Kind::Layer(Compression::Zstd)
        );
        assert_eq!(
            kind("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            Kind::Layer(Compression::Gzip)
        );
        assert_eq!(
            kind("application/vnd.oci.image.layer.v1.tar+bzip2"),
            Kind::Unknown
        );
        assert_eq!(kind(OCI_INDEX), Kind::Index);
    }
}
