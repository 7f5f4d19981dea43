package pipeline

// NormalizeAction maps a verb as sent by a producer onto one of the Action
// constants: the match ignores ASCII case and treats '-' and ' ' like '_';
// common synonyms map onto their action (get → read, post → send, rm →
// delete, exec → execute, login → auth, …) and any other non-empty verb maps
// to ActionOther. The empty string stays empty (Validate reports it missing).
// The table is documented in docs/events.md.
func NormalizeAction(verb string) Action {
	if verb == "" {
		return ""
	}
	var buf [24]byte
	if len(verb) > len(buf) {
		return ActionOther
	}
	b := buf[:len(verb)]
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '-' || c == ' ':
			c = '_'
		}
		b[i] = c
	}
	switch string(b) {
	case "read", "get", "list", "fetch", "query", "search", "view", "select",
		"describe", "download", "lookup", "browse", "head", "scan", "inspect":
		return ActionRead
	case "write", "create", "update", "put", "patch", "modify", "insert",
		"edit", "append", "upsert", "set", "rename", "move", "copy", "save",
		"commit", "merge":
		return ActionWrite
	case "delete", "remove", "drop", "purge", "destroy", "truncate", "erase",
		"rm", "del", "unlink", "wipe":
		return ActionDelete
	case "send", "post", "share", "transfer", "email", "mail", "upload",
		"publish", "forward", "export", "notify", "message", "reply", "push":
		return ActionSend
	case "execute", "exec", "run", "invoke", "invoke_shell", "shell", "spawn",
		"eval", "script", "command", "cmd":
		return ActionExecute
	case "auth", "authn", "authz", "authenticate", "authorize", "authorise",
		"login", "logon", "sign_in", "signin", "token", "assume_role",
		"impersonate", "sudo", "elevate":
		return ActionAuth
	case "other":
		return ActionOther
	}
	return ActionOther
}

// validAction reports whether a is one of the Action constants.
func validAction(a Action) bool {
	switch a {
	case ActionRead, ActionWrite, ActionDelete, ActionSend, ActionExecute, ActionAuth, ActionOther:
		return true
	}
	return false
}
