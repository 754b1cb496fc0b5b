"""The networks, their architecture table and the reference weights. Imports nothing, so that
--help stays instant."""
