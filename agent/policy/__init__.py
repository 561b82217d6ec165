"""Policy evaluation: interface regexes, and which Services this node may announce on which
interfaces (label selectors are common.apimachinery's), by Cilium's rules, as pure functions
over table rows."""
