"""The virtual mobile user: radio, mobility, handover, Local Monitor and offloading client."""
