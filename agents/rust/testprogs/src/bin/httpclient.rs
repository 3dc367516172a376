//! Calls URL (argv[1]) with reqwest through willowisp::reqwest::send; prints the status.

fn main() {
    let url = std::env::args().nth(1).expect("usage: httpclient URL");
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async move {
        let client = reqwest::Client::new();
        let handle = tokio::task::Builder::new()
            .name("caller")
            .spawn(async move {
                let resp = willowisp::reqwest::send(client.get(&url))
                    .await
                    .expect("request");
                resp.status().as_u16()
            })
            .unwrap();
        handle.await.unwrap()
    });
    println!("status {status}");
}
