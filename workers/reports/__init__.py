"""Reports for workspace admins: the on-call report (``on_call``) over the on-call history
(``models.history``), its retention (``retention``) and the workspace's time zone (``zone``)."""
