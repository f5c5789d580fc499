//! A newcomer's first run of the real binary: what it says on stderr, and
//! what the tools they reach for (grpcurl, grpc_cli) can ask of it.

mod common;

use common::*;

use tonic::transport::Channel;

/// The services a listener advertises through `v1alpha` reflection, and
/// whether it describes `symbol` (the file that defines it, as grpcurl
/// asks before a call).
async fn v1alpha_reflection(addr: &str, symbol: &str) -> (Vec<String>, bool) {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ask = |m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = [
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(symbol.into())),
    ];
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let described = matches!(
        answers.message().await.unwrap().unwrap().message_response,
        Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty()
    );
    let names = list.service.into_iter().map(|s| s.name).collect();
    (names, described)
}

#[tokio::test(flavor = "multi_thread")]
async fn both_listeners_answer_v1alpha_reflection_with_what_they_serve() {
    let f = fixture();
    let server = Server::start(&f.path, &["--no-audit"]);
    // The same services as v1 reflection advertises (tests/grpc.rs).
    for (addr, want) in [
        (&server.addr, "facegate.v1.Matcher"),
        (&server.admin_addr, "facegate.v1.GalleryAdmin"),
    ] {
        let (mut names, described) = v1alpha_reflection(addr, want).await;
        names.sort();
        assert_eq!(names, [want, "grpc.health.v1.Health"], "{addr}");
        assert!(described, "{want} is not described on {addr}");
    }
}
