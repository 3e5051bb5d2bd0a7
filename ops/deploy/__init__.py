"""Deploys: releases on a target over ssh + rsync. ``helper`` is sent to the target and uses the standard
library only. May import every library layer below it."""
