"""Policy evaluation: label selectors, interface regexes, and which Services this node may
announce on which interfaces, by the reference's rules, as pure functions over table rows."""
