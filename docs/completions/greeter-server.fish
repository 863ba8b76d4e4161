complete -c greeter-server -l config -d 'Read settings from this TOML file (also GREETER_CONFIG); flags and GREETER_* variables override what it sets' -r -F
complete -c greeter-server -l host -d 'Address or host name to listen on; repeat it for several. A name is listened on at every address it resolves to (localhost: what the hosts file gives it, usually 127.0.0.1 and ::1). :: alone also takes IPv4; beside an IPv4 address it takes IPv6 only' -r
complete -c greeter-server -l port -d 'Port to listen on, for every --host; 0 picks a free one (the real port is printed)' -r
complete -c greeter-server -l name -d 'A name for the listener (letters, digits, \'.\', \'_\' and \'-\', at most 64): a reload and an upgrade match it to its sockets by this name, and systemd\'s sockets by FileDescriptorName= (default: matched by host and port)' -r
complete -c greeter-server -l message -d 'The greeting: exactly these bytes (UTF-8), no newline added [default: "Hello there! This is the hosted server"]' -r
complete -c greeter-server -l message-file -d 'The greeting is this file\'s bytes (any bytes; a regular file of at most 1GiB, read once)' -r -F
complete -c greeter-server -l max-connections -d 'Connections held at once, besides those in a --greet-delay (see --max-delayed); the rest wait in the kernel\'s listen backlog' -r
complete -c greeter-server -l max-delayed -d 'Connections held in their --greet-delay at once, apart from --max-connections; a client that would be delayed beyond it is closed at once without the greeting (reason delay-full) (default: --max-connections)' -r
complete -c greeter-server -l write-timeout -d 'Close a peer that has not taken the whole greeting within this time' -r
complete -c greeter-server -l backlog -d 'Listen backlog (the kernel caps it at net.core.somaxconn)' -r
complete -c greeter-server -l drain-timeout -d 'On SIGINT/SIGTERM, wait this long for in-flight greetings before closing them' -r
complete -c greeter-server -l shutdown-delay -d 'On SIGINT/SIGTERM, first greet on for this long with /healthz answering 503 (stopping), so that load balancers stop sending new connections, then drain; a second signal ends the delay at once (default: 0s, off)' -r
complete -c greeter-server -l linger-timeout -d 'After the greeting, wait at most this long for a peer that sent data to close its side, so that closing never resets the connection under the greeting' -r
complete -c greeter-server -l max-per-ip -d 'At most N connections held at once from one client address; more are closed at once without the greeting (default: no limit)' -r
complete -c greeter-server -l workers -d 'Event loops, each on its own thread, sharing the listening socket; 0 means one per available core. Limits apply per worker' -r
complete -c greeter-server -l proxy-timeout -d 'With --proxy-protocol, how long a connection has to send its header, counted from the accept: the kernel accepts once the first bytes are there, or after about 1s if none come (TCP_DEFER_ACCEPT), so a silent client is closed about 1s + DUR after it connects' -r
complete -c greeter-server -l allow -d 'Greet only clients in this address or CIDR block; repeat it for several. With allow entries an address none contains is denied; the most specific entry of --allow and --deny decides (a tie: deny). With --proxy-protocol the client is the one the header names' -r
complete -c greeter-server -l deny -d 'Do not greet clients in this address or CIDR block (closed at once, reason denied); repeat it for several' -r
complete -c greeter-server -l allow-file -d 'As --allow, for every entry of this file (one address or CIDR block a line, # comments); repeat it for several' -r -F
complete -c greeter-server -l deny-file -d 'As --deny, for every entry of this file (one address or CIDR block a line, # comments); repeat it for several' -r -F
complete -c greeter-server -l deny-message -d 'Send denied clients this text instead of nothing, closed as a greeting is (default: nothing)' -r
complete -c greeter-server -l max-rate-per-ip -d 'At most RATE new connections from one source, e.g. 20/s, 600/m or 3600/h, with a burst of one second\'s worth; more are closed at once without the greeting (reason rate). A source is an address cut to --rate-prefix-v4/-v6 bits (default: no limit)' -r
complete -c greeter-server -l rate-prefix-v4 -d '--max-rate-per-ip counts IPv4 clients by their first BITS bits (32: each address is a source)' -r
complete -c greeter-server -l rate-prefix-v6 -d '--max-rate-per-ip counts IPv6 clients by their first BITS bits (64: one host usually owns a /64)' -r
complete -c greeter-server -l rate-table-size -d '--max-rate-per-ip remembers at most N sources (about 88 bytes each, measured), forgetting the least recently seen first' -r
complete -c greeter-server -l rate-group -d 'Listeners with the same rate group share one --max-rate-per-ip table (a source\'s connections to any of them count together; their rate settings must be the same) (default: each listener counts its own sources)' -r
complete -c greeter-server -l greet-delay -d 'Hold the greeting this long once the client is known (after its PROXY header with --proxy-protocol); a client that sends anything meanwhile is a pregreeter (see --pregreet). Shorter than --write-timeout, which it counts against (default: 0s, off)' -r
complete -c greeter-server -l pregreet -d 'What a pregreeter gets: greet (its greeting after the delay; logged and counted) or drop (closed at once without it, reason pregreet)' -r -f -a "greet\t'Greeted when its delay is over, as any other (logged and counted)'
drop\t'Closed at once without the greeting (reason `pregreet`)'"
complete -c greeter-server -l pass-ttl -d 'A client that waited out its --greet-delay without sending anything is greeted at once for this long after (its source, cut to --rate-prefix-v4/-v6 bits); 0s: every connection is delayed' -r
complete -c greeter-server -l pass-table-size -d '--pass-ttl remembers at most N sources (as a --rate-table-size entry each), forgetting the least recently seen first' -r
complete -c greeter-server -l drip -d 'What a --tarpit listener drips: lines (a line of --drip-line-length random printable bytes, never starting with SSH-, forever; the greeting first if --message or --message-file is set) or greeting (the greeting, --drip-bytes at a time, then the ordinary close)' -r -f -a "lines\t'A line of `--drip-line-length` random printable bytes (CRLF included), never starting with `SSH-`, forever (the greeting first, if one is set)'
greeting\t'The greeting, `--drip-bytes` at a time, then the ordinary close'"
complete -c greeter-server -l drip-line-length -d 'The length of a --drip lines line, its CRLF included (3 to 255)' -r
complete -c greeter-server -l drip-interval -d 'The time between two drips of a --tarpit listener (at least 10ms, the timers\' resolution)' -r
complete -c greeter-server -l drip-bytes -d 'The greeting\'s bytes sent each --drip-interval with --drip greeting' -r
complete -c greeter-server -l trap-timeout -d 'End a trap that has lasted this long (reason trap-timeout; checked at each drip) (default: never)' -r
complete -c greeter-server -l max-trapped -d 'Clients trapped at once by the --tarpit listeners, per worker, apart from --max-connections; at it, the tarpit listeners are not accepted from (new clients wait in the backlog) until a trap ends' -r
complete -c greeter-server -l max-trapped-per-ip -d 'At most N clients trapped at once from one address, per worker; more are closed at once (reason trap-full) (default: no limit)' -r
complete -c greeter-server -l metrics -d 'Serve Prometheus metrics (/metrics) and a health check (/healthz) over HTTP on this address and port, e.g. 127.0.0.1:9464 or localhost:9464 (a name: the first address it resolves to) (default: off)' -r
complete -c greeter-server -l upgrade-timeout -d 'On SIGUSR2, how long the new binary has to report that it serves before it is stopped (SIGTERM, SIGKILL --drain-timeout later) and this process goes on serving' -r
complete -c greeter-server -l pid-file -d 'Write the server\'s pid to this file once it serves (atomically; rewritten by the new process after an upgrade; removed at exit by the process it names)' -r -F
complete -c greeter-server -l log-format -d 'How log lines are written: text (as documented) or json (one object a line: ts, level, target, msg, and the connection lines\' fields as typed keys)' -r -f -a "text\t'`[2026-12-02T10:56:20Z INFO  greeter::connection] CLOSE peer=...`'
json\t'`{"ts":"2026-12-02T10:56:20Z","level":"INFO","target":"...","msg":"...",...}`'"
complete -c greeter-server -l send-buffer -d 'Send buffer of every connection (SO_SNDBUF, set once on the listening socket); bounds the kernel memory a peer that does not read can hold (default: the kernel\'s autotuning, up to net.ipv4.tcp_wmem\'s maximum)' -r
complete -c greeter-server -l check-config -d 'Check the configuration (flags, environment and --config) without serving: print the effective settings as a config file and exit 0, or print the problem and exit 2'
complete -c greeter-server -l health-check -d 'Check that the server these settings describe greets, for a container\'s HEALTHCHECK: connect to the first listener (through loopback for 0.0.0.0 or ::), send a PROXY header if it takes one, and compare what arrives with its greeting; exit 0 if it is exactly that, 1 (one line on stderr) if not, 2 for a bad configuration'
complete -c greeter-server -l proxy-protocol -d 'Every connection must begin with a PROXY protocol header (v1 or v2, as HAProxy\'s send-proxy sends); its client is the one limits and logs see. The greeting waits for the header; a missing or bad one closes the connection'
complete -c greeter-server -l tarpit -d 'Trap clients instead of greeting them: each is sent a drip every --drip-interval (see --drip) and held until it closes, resets or reaches --trap-timeout, outside --max-connections (see --max-trapped)'
complete -c greeter-server -l log-connections -d 'Log one ACCEPT and one CLOSE line per connection at info level (key=value, for fail2ban and the like); without it they are debug lines'
complete -c greeter-server -s h -l help -d 'Print help (see more with \'--help\')'
complete -c greeter-server -s V -l version -d 'Print version'
