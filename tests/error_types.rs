//! Every error type the crate gives implements `core::error::Error` (and so
//! `std::error::Error`), whatever the features: a caller can box it, put it
//! behind `?` in a `main`, or give it a source chain.

fn is_error<T: core::error::Error>() {}

#[test]
fn every_error_type_is_an_error() {
    use smolsock::*;
    // Codecs.
    is_error::<wire::frame::EncodeError>();
    is_error::<wire::frame::FormatError>();
    is_error::<wire::frame::ReadError>();
    is_error::<wire::frame::WriteError>();
    is_error::<wire::http::EmitError>();
    is_error::<wire::http::HttpError>();
    is_error::<wire::transfer::EmitError>();
    is_error::<wire::transfer::TransferError>();
    is_error::<store::NameError>();
    is_error::<tftp::packet::ParseError>();
    is_error::<tftp::packet::EncodeError>();
    // Sessions and stores.
    is_error::<session::SendError>();
    is_error::<store::StoreError>();
    is_error::<transfer::ClientError>();
    is_error::<transfer::LocalError>();
    is_error::<transfer::ProtocolError>();
    is_error::<transfer::SetupError>();
    is_error::<tftp::TftpError>();
    // Adapters.
    is_error::<net::ConnectError>();
    is_error::<net::HandleError>();
    is_error::<net::RecvError>();
    is_error::<net::SendError>();
    is_error::<net::ServerError>();
    is_error::<asynch::Error<embedded_io::ErrorKind>>();
    is_error::<asynch::FrameError<embedded_io::ErrorKind>>();
    is_error::<blocking::Error<embedded_io::ErrorKind>>();
    is_error::<blocking::FrameError<embedded_io::ErrorKind>>();
    is_error::<tftp::std_net::StdError>();
    #[cfg(target_os = "linux")]
    {
        is_error::<runner::tap::OpenError>();
        is_error::<runner::tap::RunError>();
        is_error::<runner::tap::SetupError>();
    }
}
