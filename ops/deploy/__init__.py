"""Deploys: releases on a target over ssh + rsync. May import every library layer below it.

``targets`` and ``source`` say where a deploy goes and what it ships; ``transport`` reaches the target (ssh, rsync,
the helper, ``inv TASK --json`` of a release); ``facts``, ``lock`` and ``plan`` read the target and decide, changing
nothing; ``apply`` (the Deployer: deploy and rollback) and ``report`` act and tell; ``status`` shows a target and
unlocks it; ``on_target`` is what a deploy runs inside a release on the target (``inv deploy.smoke``,
``inv deploy.drain``); ``helper`` is sent to the target and uses the standard library only."""
