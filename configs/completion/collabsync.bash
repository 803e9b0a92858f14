# bash completion for collabsync. Install as
# /usr/share/bash-completion/completions/collabsync.

# __names asks collabsync for names (targets, sources, collaborations) from
# the configuration on the command line (or the default) and the stored
# state; nothing when it cannot.
__collabsync_names() {
    local cfg=() i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -config|--config) cfg=(-config "${COMP_WORDS[i+1]}") ;;
        esac
    done
    collabsync "${cfg[@]}" __complete "$1" 2>/dev/null
}

_collabsync() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    local commands="approve check-config contacts ingest plan report serve status sync version violations"
    local global="-config -log-level -log-format -lock-wait"

    case $prev in
        -config|--config|-from|--from) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -log-level|--log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
        -log-format|--log-format) COMPREPLY=($(compgen -W "text json auto" -- "$cur")); return ;;
        -p) COMPREPLY=($(compgen -W "collaboration computing storage reporting validator" -- "$cur")); return ;;
        -by|--by) COMPREPLY=($(compgen -W "collaboration user month cluster" -- "$cur")); return ;;
        -format|--format)
            case ${COMP_WORDS[*]} in
                *" plan "*) COMPREPLY=($(compgen -W "text json" -- "$cur")) ;;
                *" report "*) COMPREPLY=($(compgen -W "table csv json" -- "$cur")) ;;
                *) COMPREPLY=($(compgen -W "table json" -- "$cur")) ;;
            esac
            return ;;
        -g|-collaboration|--collaboration) COMPREPLY=($(compgen -W "$(__collabsync_names collaborations)" -- "$cur")); return ;;
        -source|--source) COMPREPLY=($(compgen -W "$(__collabsync_names sources)" -- "$cur")); return ;;
        -lock-wait|--lock-wait|-since|--since|-until|--until) return ;;
    esac

    # The command is the first word that is not a global flag or its value.
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -config|--config|-log-level|--log-level|-log-format|--log-format|-lock-wait|--lock-wait) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi
    # approve's first argument is a target.
    if [[ $cmd == approve && $cur != -* && $prev == approve ]]; then
        COMPREPLY=($(compgen -W "$(__collabsync_names targets)" -- "$cur"))
        return
    fi
    local flags=
    case $cmd in
        sync) flags="--once --dry-run --allow-deletions" ;;
        plan) flags="--format --check" ;;
        check-config) flags="--online" ;;
        violations) flags="--stored --format" ;;
        status) flags="--format" ;;
        contacts) flags="-g -p --format" ;;
        ingest) flags="--source --from --rescan" ;;
        report) flags="--by --collaboration --user --since --until --format --allocations --at" ;;
    esac
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}
complete -F _collabsync collabsync
