"""l2dbg: the debug CLI. It reads the agent's state database read-only, so it works even when
the agent is wedged.

The picture::

    dbg.main.main()          argv preprocessing (-w/--watch[=interval]) and the fast path
      |-- dbg.fast           `l2dbg statedb <table> [-o ...] [--state-dir ...]` without typer
      `-- dbg.cli            the typer app: every command, its options and help
            `-- dbg.statedb_cmd   open the database, read one snapshot, hand rows to a renderer
                  |-- dbg.watch          -w: poll data_version, print changed and deleted rows
                  |-- dbg.query_guard    the SQL authorizer of `l2dbg statedb query`
                  `-- dbg.output         plain (dbg.render_plain) | rich (dbg.render_rich) | json | yaml

Only ``dbg.render_rich`` imports rich, and only when it renders to a terminal; the piped and
``-o plain|json|yaml`` paths never load it. ``dbg`` never imports ``agent``.
"""
