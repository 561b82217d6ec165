"""Policy evaluation: label selectors, interface regexes, and which Services this node may
announce on which interfaces (reference §1.3-1.4), as pure functions over table rows."""
