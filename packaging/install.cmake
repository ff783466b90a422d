# Installs pmserver's service files. Runs at install time, so that the
# paths in them follow `cmake --install --prefix P` (and DESTDIR for a
# package): the unit and the sysusers entry under P/lib, the settings in
# /etc/pmcr when P is /usr, else in P/etc/pmcr. An existing pmserver.toml
# is an operator's and is kept; the new one goes beside it as
# pmserver.toml.new.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(ETC "/etc")
else()
  set(ETC "${prefix}/etc")
endif()
set(PMSERVER "${prefix}/${PMCR_BINDIR}/pmserver")
set(CONFIG "${ETC}/pmcr/pmserver.toml")
# (Staged apart for each destination: installs into different prefixes may
# run at once.)
string(MD5 where "$ENV{DESTDIR}${prefix}")
set(staging "${PMCR_PACKAGING_BUILD}/staging-${where}")
configure_file("${PMCR_PACKAGING_DIR}/pmserver.service.in" "${staging}/pmserver.service" @ONLY)
configure_file("${PMCR_PACKAGING_DIR}/pmserver.toml" "${staging}/pmserver.toml" @ONLY)
configure_file("${PMCR_PACKAGING_DIR}/pmcr.sysusers" "${staging}/pmcr.conf" COPYONLY)
file(INSTALL "${staging}/pmserver.service" DESTINATION "${prefix}/lib/systemd/system")
file(INSTALL "${staging}/pmcr.conf" DESTINATION "${prefix}/lib/sysusers.d")
if(EXISTS "$ENV{DESTDIR}${CONFIG}")
  file(INSTALL "${staging}/pmserver.toml" DESTINATION "${ETC}/pmcr" RENAME pmserver.toml.new)
else()
  file(INSTALL "${staging}/pmserver.toml" DESTINATION "${ETC}/pmcr")
endif()
