complete -c greeter-load -l host -d 'Server host name or address (IPv6 with or without brackets: ::1 or [::1])' -r
complete -c greeter-load -l port -d 'Server port (1 to 65535)' -r
complete -c greeter-load -s c -l connections -d 'Connections in flight at once' -r
complete -c greeter-load -s n -l total -d 'Stop after N connections (whichever of N and DUR comes first)' -r
complete -c greeter-load -s d -l duration -d 'Stop after this long (whichever of N and DUR comes first)' -r
complete -c greeter-load -l message -d 'The greeting: exactly these bytes (UTF-8), no newline added [default: "Hello there! This is the hosted server"]' -r
complete -c greeter-load -l message-file -d 'The greeting is this file\'s bytes (any bytes; a regular file of at most 1GiB, read once)' -r -F
complete -c greeter-load -l timeout -d 'Per connection, from connect to EOF' -r
complete -c greeter-load -l send-proxy -d 'Begin every connection with a PROXY protocol header (its own addresses), v1 (text, the default) or v2 (binary), for a server run with --proxy-protocol' -r -f -a "v1\t'The text header (HAProxy\'s send-proxy)'
v2\t'The binary header (HAProxy\'s send-proxy-v2, cloud load balancers)'"
complete -c greeter-load -l threads -d 'Event-loop threads sharing the connections' -r
complete -c greeter-load -l hold -d 'Hold N clients on a tarpit for --duration instead: each connects once, reads whatever arrives and records when; reports how many stayed connected to the end and the longest gap between two reads (exit 1 unless all did)' -r
complete -c greeter-load -l distinct-sources -d 'With --send-proxy, name a different IPv4 client in every header (10.0.0.0 and up), as a million clients behind a load balancer would be'
complete -c greeter-load -l json -d 'Print one JSON object on stdout instead of the table'
complete -c greeter-load -s h -l help -d 'Print help (see more with \'--help\')'
complete -c greeter-load -s V -l version -d 'Print version'
