use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};

fn record(port: u16) -> TrapRecord {
    TrapRecord {
        listener: "127.0.0.1:2222".parse().unwrap(),
        peer: SocketAddr::from(([192, 0, 2, 7], port)),
        socket_peer: SocketAddr::from(([127, 0, 0, 1], port)),
        start_ms: 1_700_000_000_123,
        sent: 96,
        lines: true,
        why: TrapWhy::Deny,
        first: FirstInput::Ssh,
        input: 21,
        blocked: true,
        due_ms: 4_321,
        country: *b"--",
        greeting: None,
    }
}

#[test]
fn a_record_reads_back_as_it_was_written() {
    let mut written = record(40000);
    let line = written.to_line();
    assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    assert_eq!(TrapRecord::parse(line.trim_end()), Some(written.clone()));
    written.lines = false;
    written.why = TrapWhy::Pregreet;
    written.first = FirstInput::None;
    written.blocked = false;
    written.peer = "[2001:db8::1]:5".parse().unwrap();
    written.country = *b"NL";
    // A dripped greeting carries the greeting it began, any bytes.
    written.greeting = Some(b"220 mail\r\n\x00\xff".to_vec());
    assert_eq!(
        TrapRecord::parse(written.to_line().trim_end()),
        Some(written)
    );
}

#[test]
fn a_record_this_version_cannot_read_is_refused_and_unknown_fields_are_not() {
    let line = record(1).to_line();
    let line = line.trim_end();
    assert!(TrapRecord::parse(&format!("{line} later=field")).is_some());
    for bad in [
        "",
        "garbage",
        &line.replacen("v1", "v2", 1),
        &line.replace("peer=192.0.2.7:1", "peer=nowhere"),
        &line.replace("mode=lines", "mode=poetry"),
        &format!("{line} greeting=0"),
        &format!("{line} greeting=zz"),
        &format!("{line} greeting={}", "00".repeat(MAX_HANDED_GREETING + 1)),
        &line.replace("why=deny", "why=spite"),
        &line.replace("start_ms=1700000000123", "start_ms=-1"),
        &line.replace(" start_ms=1700000000123", ""),
        &line.replace(" socket_peer=127.0.0.1:1", ""),
        &line.replace("country=--", "country=NLD"),
        &line.replace("sent=96", "sent96"),
    ] {
        assert_eq!(TrapRecord::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn sockets_arrive_with_their_records_across_messages_and_a_bad_record_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Each accepted at once: the backlog is smaller than 300.
    let (clients, accepted): (Vec<TcpStream>, Vec<TcpStream>) = (0..300)
        .map(|_| {
            (
                TcpStream::connect(addr).unwrap(),
                listener.accept().unwrap().0,
            )
        })
        .unzip();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let records: Vec<TrapRecord> = (0..300)
        .map(|i| TrapRecord {
            socket_peer: accepted[i].peer_addr().unwrap(),
            ..record(i as u16)
        })
        .collect();
    let fds: Vec<RawFd> = accepted.iter().map(AsRawFd::as_raw_fd).collect();
    // Sent as the old process sends, while this end reads.
    let sender = std::thread::spawn(move || {
        for (records, fds) in records
            .chunks(MAX_FDS_PER_MESSAGE)
            .zip(fds.chunks(MAX_FDS_PER_MESSAGE))
        {
            send_batch(&ours, records, fds).unwrap();
        }
        // One record this version cannot read, with its socket.
        let text = record(9999).to_line().replacen("v1", "v9", 1);
        let rights = [ControlMessage::ScmRights(&fds[..1])];
        let message = [IoSlice::new(text.as_bytes())];
        sendmsg::<()>(ours.as_raw_fd(), &message, &rights, MsgFlags::empty(), None).unwrap();
        drop(accepted);
    });
    theirs.set_nonblocking(true).unwrap();
    let mut receiver = HandedReceiver::default();
    let mut handed = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (more, ended) = receiver.receive(&theirs);
        handed.extend(more);
        if ended || std::time::Instant::now() > deadline {
            break;
        }
    }
    sender.join().unwrap();
    assert_eq!(handed.len(), 300);
    assert_eq!(receiver.unreadable, 1);
    for (i, handed) in handed.iter().enumerate() {
        assert_eq!(handed.record.peer.port(), i as u16);
        // Its socket is the i-th client's: what is written on it reaches that client.
        let mut stream = TcpStream::from(handed.socket.try_clone().unwrap());
        stream.write_all(&[i as u8]).unwrap();
    }
    for (i, mut client) in clients.into_iter().enumerate() {
        let mut byte = [0u8];
        client.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i as u8);
    }
}

#[test]
fn two_workers_sharing_the_channel_never_pair_a_record_with_another_clients_socket() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = 2 * 3 * MAX_FDS_PER_MESSAGE;
    let (clients, accepted): (Vec<TcpStream>, Vec<TcpStream>) = (0..count)
        .map(|_| {
            (
                TcpStream::connect(addr).unwrap(),
                listener.accept().unwrap().0,
            )
        })
        .unzip();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let shared: SharedChannel = std::sync::Arc::new(std::sync::Mutex::new(ours));
    let accepted = std::sync::Arc::new(accepted);
    // Two workers, three full messages each, at once, as the old process's do.
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let shared = std::sync::Arc::clone(&shared);
            let accepted = std::sync::Arc::clone(&accepted);
            std::thread::spawn(move || {
                let mine: Vec<usize> = (0..count).filter(|i| i % 2 == worker).collect();
                for batch in mine.chunks(MAX_FDS_PER_MESSAGE) {
                    let records: Vec<TrapRecord> = batch
                        .iter()
                        .map(|&i| TrapRecord {
                            socket_peer: accepted[i].peer_addr().unwrap(),
                            ..record(i as u16)
                        })
                        .collect();
                    let fds: Vec<RawFd> = batch.iter().map(|&i| accepted[i].as_raw_fd()).collect();
                    let channel = shared.lock().unwrap();
                    send_batch(&channel, &records, &fds).unwrap();
                }
            })
        })
        .collect();
    theirs.set_nonblocking(true).unwrap();
    let mut receiver = HandedReceiver::default();
    let mut handed = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while handed.len() + receiver.unreadable < count && std::time::Instant::now() < deadline {
        let (more, _) = receiver.receive(&theirs);
        handed.extend(more);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!((handed.len(), receiver.unreadable), (count, 0));
    for handed in &handed {
        let i = handed.record.peer.port() as usize;
        let socket = TcpStream::from(handed.socket.try_clone().unwrap());
        assert_eq!(
            socket.peer_addr().unwrap(),
            clients[i].local_addr().unwrap()
        );
    }
}
