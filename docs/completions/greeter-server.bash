_greeter__server() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="greeter__server"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        greeter__server)
            opts="-h -V --config --check-config --health-check --host --port --name --message --message-file --max-connections --max-delayed --write-timeout --backlog --drain-timeout --shutdown-delay --linger-timeout --max-per-ip --workers --proxy-protocol --proxy-timeout --allow --deny --allow-file --deny-file --deny-message --deny-action --max-rate-per-ip --rate-prefix-v4 --rate-prefix-v6 --rate-table-size --rate-group --rate-action --greet-delay --pregreet --pass-ttl --pass-table-size --tarpit --drip --drip-line-length --drip-interval --drip-bytes --geoip-db --trap-timeout --max-trapped --max-trapped-per-ip --metrics --log-connections --upgrade-timeout --pid-file --log-format --send-buffer --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --config)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --host)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --port)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --message-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-connections)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-delayed)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --write-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backlog)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drain-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --shutdown-delay)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --linger-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-per-ip)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --workers)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --proxy-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --deny)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --allow-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --deny-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --deny-message)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --deny-action)
                    COMPREPLY=($(compgen -W "close tarpit" -- "${cur}"))
                    return 0
                    ;;
                --max-rate-per-ip)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate-prefix-v4)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate-prefix-v6)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate-table-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate-group)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate-action)
                    COMPREPLY=($(compgen -W "close tarpit" -- "${cur}"))
                    return 0
                    ;;
                --greet-delay)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pregreet)
                    COMPREPLY=($(compgen -W "greet drop tarpit" -- "${cur}"))
                    return 0
                    ;;
                --pass-ttl)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pass-table-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drip)
                    COMPREPLY=($(compgen -W "lines greeting" -- "${cur}"))
                    return 0
                    ;;
                --drip-line-length)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drip-interval)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --drip-bytes)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --geoip-db)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --trap-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-trapped)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-trapped-per-ip)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --metrics)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --upgrade-timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --pid-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --log-format)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --send-buffer)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _greeter__server -o nosort -o bashdefault -o default greeter-server
else
    complete -F _greeter__server -o bashdefault -o default greeter-server
fi
