complete -c greeter-client -l host -d 'Server host name or address (IPv6 with or without brackets: ::1 or [::1])' -r
complete -c greeter-client -l port -d 'Server port (1 to 65535)' -r
complete -c greeter-client -l timeout -d 'Limit for connecting, and for each read' -r
complete -c greeter-client -l max-bytes -d 'Cut off a server that sends more than this many bytes' -r
complete -c greeter-client -s h -l help -d 'Print help (see more with \'--help\')'
complete -c greeter-client -s V -l version -d 'Print version'
