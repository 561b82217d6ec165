"""l2dbg: the debug CLI. It reads the agent's state database read-only, so it works even when
the agent is wedged.

The picture::

    dbg.main.main()          the console script: runs dbg.cli's command line, nothing more
      `-- dbg.cli            the root (--state-dir) and its commands, each module imported when used
            |-- dbg.statedb_cmd   one command per table (built on demand), dump, query
            |     |-- dbg.statedb_ops    open the database, read one snapshot, rows -> Grid
            |     |-- dbg.watch          -w: poll data_version, print changed and deleted rows
            |     |-- dbg.query_guard    the SQL authorizer of `l2dbg statedb query`
            |     `-- dbg.output         plain (dbg.render_plain) | rich (dbg.render_rich) | json | yaml
            |-- dbg.config_cmd    `l2dbg config --all`
            |-- dbg.status_cmd    `l2dbg status`
            `-- dbg.bpf_cmd       `l2dbg bpf l2-responder list`
    dbg.options              --state-dir at every level, resolved once; errors as one line

typer is the only parser; ``common.cli`` keeps it from importing pydantic and builds commands
lazily. Only ``dbg.render_rich`` imports rich, and only when it renders to a terminal; the piped
and ``-o plain|json|yaml`` paths never load it. ``dbg`` never imports ``agent``.
"""
